#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// Turns an image's layers into one read-only erofs image. Each layer (tar,
/// gzip or zstd; GNU tar finds out which) unpacks into a fresh directory of
/// its own, so nothing it holds is written through a symlink of a layer
/// below (an absolute `evil -> /etc` would lead out of the tree); it is then
/// merged over the layers below as overlayfs stacks them: a directory
/// merges into a directory and replaces anything else, any other entry
/// replaces what was there, `.wh.NAME` removes NAME from below and
/// `.wh..wh..opq` empties its directory of what was below. `mkfs.erofs`
/// packs the tree (uncompressed: the fastest to build, and Debian's kernel
/// mounts it). Ownership and modes are kept (numeric ids).
public enum RootFS {
    public static let opaqueMarker = ".wh..wh..opq"

    /// Builds `output` from `layers` (bottom first) in a scratch tree beside
    /// it, written under a partial name and renamed when whole.
    public static func build(layers: [String], output: String) throws(AppError) {
        guard let tar = Launcher.which("tar") else { throw .unavailable("tar is not installed") }
        guard let mkfs = Launcher.which("mkfs.erofs") else { throw .unavailable("mkfs.erofs is not installed (erofs-utils)") }
        let dir = Files.parent(of: output)
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let tree = dir + "/.partial-tree-" + tag
        let layerDir = dir + "/.partial-layer-" + tag
        let partial = dir + "/.partial-rootfs-" + tag
        defer { Files.removeTree(tree); Files.removeTree(layerDir); unlink(partial) }
        do { try Files.makeDirectories(tree) } catch { throw .unavailable("\(tree): \(error)") }
        for (i, layer) in layers.enumerated() {
            Files.removeTree(layerDir)
            do { try Files.makeDirectories(layerDir) } catch { throw .unavailable("\(layerDir): \(error)") }
            _ = try run(tar, ["-xf", layer, "-C", layerDir, "--numeric-owner", "--same-owner", "--same-permissions",
                              "--delay-directory-restore"],
                        what: "unpack layer \(i + 1)")
            try merge(layerDir, into: tree)
        }
        _ = try run(mkfs, ["--quiet", partial, tree], what: "mkfs.erofs")
        guard rename(partial, output) == 0 else { throw .unavailable("keep \(output): \(String(cString: strerror(errno)))") }
    }

    /// Moves the entries of the directory `upper` over `lower` (both real
    /// directories; nothing is followed through a symlink), applying
    /// whiteouts; `upper` is left empty.
    static func merge(_ upper: String, into lower: String) throws(AppError) {
        let names = Files.list(upper)
        if names.contains(opaqueMarker) {
            for e in Files.list(lower) { Files.removeTree(lower + "/" + e) }
        }
        for name in names {
            let from = upper + "/" + name
            let to = lower + "/" + name
            if let (_, hidden) = whiteout(name) {
                if let hidden { Files.removeTree(lower + "/" + hidden) }
                unlink(from)
                continue
            }
            if isRealDirectory(from) && isRealDirectory(to) {
                try merge(from, into: to)
                // the upper directory's owner, mode and times win
                var st = stat()
                if lstat(from, &st) == 0 {
                    _ = lchown(to, st.st_uid, st.st_gid)
                    _ = chmod(to, st.st_mode & 0o7777)
                    var times = [st.st_atim, st.st_mtim]
                    _ = utimensat(AT_FDCWD, to, &times, AT_SYMLINK_NOFOLLOW)
                }
                rmdir(from)
            } else {
                Files.removeTree(to)
                guard rename(from, to) == 0 else {
                    throw .unavailable("merge the layer's \(name): \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    static func isRealDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// A path an archive names, relative to its root (`./a/b/` → `a/b`); nil when it
    /// would leave the root.
    static func normalized(_ path: String) -> String? {
        var parts: [Substring] = []
        for p in path.split(separator: "/") where p != "." && !p.isEmpty {
            if p == ".." { return nil }
            parts.append(p)
        }
        return parts.joined(separator: "/")
    }

    /// What a whiteout entry removes from the layers below, relative to the
    /// root: `(directory, nil)` to empty a directory, `(dir, name)` to remove
    /// one entry; nil for an ordinary entry.
    static func whiteout(_ entry: String) -> (dir: String, name: String?)? {
        let slash = entry.lastIndex(of: "/")
        let base = slash.map { String(entry[entry.index(after: $0)...]) } ?? entry
        let dir = slash.map { String(entry[..<$0]) } ?? ""
        guard base.hasPrefix(".wh.") else { return nil }
        if base == opaqueMarker { return (dir, nil) }
        let name = String(base.dropFirst(4))
        guard !name.isEmpty, name != ".", name != ".." else { return nil }
        return (dir, name)
    }

    private static func run(_ tool: String, _ args: [String], what: String) throws(AppError) -> String {
        let result: (status: Int32, output: String)
        do { result = try Launcher(tool, args).run() } catch { throw .unavailable("\(what): \(error)") }
        guard result.status == 0 else {
            let tail = result.output.split(separator: "\n").prefix(3).joined(separator: "; ")
            let printable = String(String.UnicodeScalarView(tail.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
            throw .invalid("\(what) failed (exit \(result.status)): \(printable.prefix(300))")
        }
        return result.output
    }
}
