#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// Turns an image's layers into one read-only erofs image: each layer
/// (tar, gzip or zstd; GNU tar finds out which) unpacks over the ones
/// below it after its whiteouts are applied (`.wh.NAME` removes NAME from
/// the layers below, `.wh..wh..opq` empties its directory of them), then
/// `mkfs.erofs` packs the tree (uncompressed: the fastest to build, and
/// Debian's kernel mounts it). Ownership and modes are kept (numeric ids).
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
        let partial = dir + "/.partial-rootfs-" + tag
        defer { Files.removeTree(tree); unlink(partial) }
        do { try Files.makeDirectories(tree) } catch { throw .unavailable("\(tree): \(error)") }
        for (i, layer) in layers.enumerated() {
            let listing = try run(tar, ["-tf", layer, "--quoting-style=literal"], what: "list layer \(i + 1)")
            for line in listing.split(separator: "\n") {
                guard let entry = normalized(String(line)) else {
                    throw .invalid("layer \(i + 1) has an entry outside the root: '\(Names.clip(String(line)))'")
                }
                try applyWhiteout(entry, in: tree)
            }
            _ = try run(tar, ["-xf", layer, "-C", tree, "--numeric-owner", "--same-owner", "--same-permissions",
                              "--delay-directory-restore", "--exclude=.wh.*"],
                        what: "unpack layer \(i + 1)")
        }
        _ = try run(mkfs, ["--quiet", partial, tree], what: "mkfs.erofs")
        guard rename(partial, output) == 0 else { throw .unavailable("keep \(output): \(String(cString: strerror(errno)))") }
    }

    /// A tar entry's path relative to the root (`./a/b/` → `a/b`); nil when it
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

    /// Applies one whiteout to the tree (nothing through a symlink: a
    /// whiteout never reaches outside the tree).
    static func applyWhiteout(_ entry: String, in tree: String) throws(AppError) {
        guard let (dir, name) = whiteout(entry) else { return }
        var path = tree
        for part in dir.split(separator: "/") {
            path += "/" + part
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return }
        }
        if let name {
            Files.removeTree(path + "/" + name)
        } else {
            for e in Files.list(path) { Files.removeTree(path + "/" + e) }
        }
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
