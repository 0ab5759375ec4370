#if canImport(Glibc)
import Glibc
#endif
import CDisks
import Config
import Platform

/// Streams `http://` or `https://HOST[:PORT]/PATH` into a file descriptor
/// (images listed with `url:` in the config, and imports from a URL)
/// through Platform's HTTP client: up to `maxRedirects` redirects followed
/// (never from https to http), the server's certificate and name checked
/// against the system's trust store or `caFile`. Integrity comes from the
/// SHA-256, hashed as the body passes.
///
/// The server is not trusted: the whole transfer has a deadline, each read
/// a timeout, and memory stays bounded whatever the server sends (one read
/// buffer, sizes checked against `limit` before use). Failures are image
/// errors: `tooLarge` for a body over the limit, else `invalid`.
enum Download {
    static let maxRedirects = 5
    /// Bytes per read, written at once from the client's buffer: fewer
    /// system calls (measured here: 1 MiB reads cost about 20 % less CPU
    /// than 256 KiB ones, 40 % less than 64 KiB; larger ones cost more).
    static let readSize = 1 << 20
    /// Dirty bytes after which the disk is told to start writing back.
    static let writebackStep: Int64 = 8 << 20
    /// Bytes between two progress reports.
    static let progressStep: Int64 = 8 << 20

    struct Limits {
        /// Most bytes the body may have.
        var size: Int64
        /// When the whole download must be done (monotonic seconds).
        var deadline: Double
        /// Longest wait for any one read or write.
        var readTimeout: Double
        /// Told the bytes written so far and the size when the server said it.
        var progress: (@Sendable (Int64, Int64?) -> Void)? = nil
    }

    static func fetch(_ url: String, into out: Int32, limits: Limits, caFile: String? = nil) throws -> Int64 {
        var flushed: Int64 = 0
        return try fetch(url, limits: limits, caFile: caFile) { bytes, total in
            try Files.writeAll(out, bytes, what: "write image")
            // the disk writes back while the network delivers: the
            // final fsync has little left to wait for
            if total - flushed >= writebackStep {
                _ = cb_start_writeback(out, flushed, total - flushed)
                flushed = total
            }
        }
    }

    /// Streams `url`'s body to `write`, a slice at a time (valid only during
    /// the call) with the bytes delivered so far, these included; its size.
    static func fetch(_ url: String, limits: Limits, caFile: String? = nil,
                      write: (UnsafeRawBufferPointer, Int64) throws -> Void) throws -> Int64 {
        let client = HTTPClient(trust: caFile.map { .authorities($0) } ?? .system, timeout: limits.readTimeout,
                                redirects: maxRedirects, readSize: readSize)
        do {
            let exchange = try client.open(HTTPRequest("GET", HTTPURL(parsing: url)), deadline: Deadline(at: limits.deadline))
            guard exchange.head.status == 200 else { throw failure(url, "HTTP \(exchange.head.status)") }
            let announced = exchange.head.header("content-length").flatMap { Int64($0) }
            var total: Int64 = 0
            var told: Int64 = 0
            let n = try exchange.readBody(limit: limits.size) { bytes in
                total += Int64(bytes.count)
                try write(bytes, total)
                // progress once per step, not per read
                if total - told >= progressStep {
                    limits.progress?(total, announced)
                    told = total
                }
            }
            if told != total { limits.progress?(total, announced) }
            return n
        } catch let e as NetError {
            throw imageError(e, url: url, limit: limits.size)
        }
    }

    static func failure(_ url: String, _ why: String) -> ImageError {
        .invalid("\(Names.clip(url)): \(why)")
    }

    /// What a failed download says.
    static func imageError(_ e: NetError, url: String, limit: Int64) -> ImageError {
        switch e {
        case .badURL(.scheme): .invalid("url '\(Names.clip(url))': only http:// and https:// are supported (use file: for local images)")
        case .badURL(.host): .invalid("url '\(Names.clip(url))' has no valid host")
        case .badURL(.path): .invalid("url '\(Names.clip(url))' has an invalid path")
        case .resolve, .connect: .invalid("\(e)")
        case .deadline: failure(url, "not done within the download's deadline")
        case .tooLarge(_, nil): .tooLarge("\(Names.clip(url)): larger than \(Sizes.human(limit))")
        case .tooLarge(_, let chunk?): .tooLarge("\(Names.clip(url)): a chunk of \(chunk) bytes makes it larger than \(Sizes.human(limit))")
        default: failure(url, "\(e)")
        }
    }
}
