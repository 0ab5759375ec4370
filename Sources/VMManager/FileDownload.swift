#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// A download of a whole file from a URL outside the image store (a system
/// upgrade's ISO), with the same client, limits and errors as imports.
public enum FileDownload {
    /// Streams `url` into a new file at `path`; its size. A failure removes
    /// the file.
    public static func fetch(_ url: String, to path: String, limit: Int64, timeout: Double = 3600,
                             progress: (@Sendable (Int64, Int64?) -> Void)? = nil) throws -> Int64 {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { fd.close() }
        do {
            let n = try Download.fetch(url, into: fd.rawValue, limits: .init(size: limit, deadline: Clock.monotonic() + timeout,
                                                                         readTimeout: 60, progress: progress))
            try syscall("fsync \(path)") { fsync(fd.rawValue) }
            return n
        } catch {
            Files.remove(path)
            throw error
        }
    }
}
