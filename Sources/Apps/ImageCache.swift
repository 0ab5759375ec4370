#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import CTLS

/// The images apps run from, under `STATE/apps`: blobs by digest
/// (`blobs/sha256/HEX`, shared by every image and app that uses them,
/// each checked against its digest before it is kept) and one built image
/// per image digest (`images/HEX/`: `rootfs.erofs`, `config.json`).
/// Anything half-written has a `.partial-` name and is never used.
public struct ImageCache: Sendable {
    public let root: String

    public init(stateDir: String) { root = stateDir + "/apps" }

    public var blobDir: String { root + "/blobs/sha256" }
    public func blobPath(_ digest: String) -> String { blobDir + "/" + digest.dropFirst(7) }
    public func imageDir(_ digest: String) -> String { root + "/images/" + digest.dropFirst(7) }

    /// The blob, downloaded and checked unless it is kept already.
    public func blob(_ d: Descriptor, from registry: inout Registry, deadline: Deadline) throws(AppError) -> String {
        let final = blobPath(d.digest)
        if Files.exists(final) { return final }
        do { try Files.makeDirectories(blobDir) } catch { throw .unavailable("\(blobDir): \(error)") }
        let partial = blobDir + "/.partial-\(d.digest.dropFirst(7))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .unavailable("create \(partial): \(String(cString: strerror(errno)))") }
        var kept = false
        defer {
            close(fd)
            if !kept { unlink(partial) }
        }
        do {
            let hash = try TrailingSHA256(path: partial)
            var total: Int64 = 0
            _ = try registry.blob(d, deadline: deadline) { bytes in
                try Files.writeAll(fd, bytes, what: "write \(partial)")
                total += Int64(bytes.count)
                hash.written(total)
            }
            let got = "sha256:" + (try hash.finish())
            guard got == d.digest else { throw AppError.digestMismatch(what: "blob \(d.digest)", expected: d.digest, got: got) }
            guard fsync(fd) == 0, rename(partial, final) == 0 else { throw SystemError.current("keep \(final)") }
            kept = true
            return final
        } catch let e as AppError {
            throw e
        } catch {
            throw .unavailable("\(error)")
        }
    }
}

/// sha256 of bytes in memory, lowercase hex.
func hexSHA256(_ bytes: [UInt8]) -> String {
    var out = [UInt8](repeating: 0, count: 32)
    bytes.withUnsafeBytes { p in cb_sha256(p.baseAddress, p.count, &out) }
    let digits = Array("0123456789abcdef".utf8)
    var s: [UInt8] = []
    for b in out { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
    return String(decoding: s, as: UTF8.self)
}
