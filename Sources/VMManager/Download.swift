#if canImport(Glibc)
import Glibc
#endif
import CShims
import Config
import Platform

/// Streams `http://` or `https://HOST[:PORT]/PATH` into a file descriptor
/// (images listed with `url:` in the config). HTTP/1.1, Content-Length,
/// chunked or read-to-close bodies; up to `maxRedirects` redirects are
/// followed (never from https to http). HTTPS (GnuTLS) verifies the
/// server's certificate and name against the system's trust store, or
/// against `caFile`. Integrity comes from the config's `sha256`.
///
/// The server is not trusted: the whole transfer has a deadline, each read
/// a timeout, and memory stays bounded whatever the server sends (a read's
/// worth of body at a time, sizes checked against `limit` before use).
enum Download {
    static let maxRedirects = 5
    /// Longest chunk-size line (the size, then optional extensions).
    static let maxChunkLine = 1024

    struct Limits {
        /// Most bytes the body may have.
        var size: Int64
        /// When the whole download must be done (monotonic seconds).
        var deadline: Double
        /// Longest wait for any one read or write.
        var readTimeout: Double
        /// Told the bytes written so far and the size when the server said it.
        var progress: (@Sendable (Int64, Int64?) -> Void)? = nil
        /// Hashes the body as it is written (no second read of the file).
        var digest: StreamingSHA256? = nil
    }

    static func fetch(_ url: String, into out: Int32, limits: Limits, caFile: String? = nil) throws -> Int64 {
        var current = url
        for _ in 0...maxRedirects {
            switch try fetchOnce(current, into: out, limits: limits, caFile: caFile) {
            case .body(let size):
                return size
            case .redirect(let location):
                let next = try resolve(location, against: current)
                if current.hasPrefix("https://") && next.hasPrefix("http://") {
                    throw failure(url, "redirected from https to http (\(Names.clip(next))); refused")
                }
                current = next
            }
        }
        throw failure(url, "more than \(maxRedirects) redirects")
    }

    enum Outcome { case body(Int64), redirect(String) }

    static func failure(_ url: String, _ why: String) -> ImageError {
        .invalid("\(Names.clip(url)): \(why)")
    }

    /// Where a `Location` points: an absolute http(s) URL, or a path on the
    /// same server.
    static func resolve(_ location: String, against url: String) throws -> String {
        if location.hasPrefix("http://") || location.hasPrefix("https://") { return location }
        guard location.hasPrefix("/"), !location.hasPrefix("//") else {
            throw failure(url, "redirect to '\(Names.clip(location))', which is not an http(s) URL or an absolute path")
        }
        let scheme = url.hasPrefix("https://") ? "https://" : "http://"
        let hostPort = url.dropFirst(scheme.count).prefix { $0 != "/" }
        return scheme + hostPort + location
    }

    static func fetchOnce(_ url: String, into out: Int32, limits: Limits, caFile: String?) throws -> Outcome {
        let https = url.hasPrefix("https://")
        guard https || url.hasPrefix("http://") else {
            throw ImageError.invalid("url '\(Names.clip(url))': only http:// and https:// are supported (use file: for local images)")
        }
        let rest = url.dropFirst(https ? 8 : 7)
        let hostPort = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(hostPort.count)
        guard let hp = HostPort.parse(String(hostPort)) ?? HostPort.parse(String(hostPort) + (https ? ":443" : ":80")) else {
            throw ImageError.invalid("url '\(Names.clip(url))' has no valid host")
        }
        guard path.allSatisfy({ $0.isASCII && $0 > " " }) else { throw ImageError.invalid("url '\(Names.clip(url))' has an invalid path") }
        let conn = Connection(url: url, limits: limits)
        conn.fd = try connect(hp.host, hp.port, timeout: conn.nextTimeout())
        defer { conn.close() }
        if https {
            var err = [CChar](repeating: 0, count: 512)
            conn.tls = cb_tls_client_connect_verified(conn.fd, hp.host, caFile, &err, err.count)
            guard conn.tls != nil else { throw failure(url, String(nulTerminated: err)) }
        }
        try conn.send(Array("GET \(path.isEmpty ? "/" : String(path)) HTTP/1.1\r\nHost: \(hostPort)\r\nUser-Agent: cloudbios\r\nConnection: close\r\n\r\n".utf8))

        // head
        var headEnd: Int?
        while headEnd == nil {
            if let i = find(conn.pending, [13, 10, 13, 10]) { headEnd = i; break }
            guard conn.pending.count < 65536, try conn.readMore() else { throw failure(url, "malformed HTTP response") }
        }
        let head = String(decoding: conn.pending[..<headEnd!], as: UTF8.self).split(separator: "\r\n")
        conn.pending.removeFirst(headEnd! + 4)
        let status = head.first?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        func header(_ n: String) -> String? {
            head.first { $0.lowercased().hasPrefix(n + ":") }.map { String($0.dropFirst(n.count + 1)).trimmingSpacesAndTabs() }
        }
        if [301, 302, 303, 307, 308].contains(status) {
            guard let location = header("location"), !location.isEmpty else { throw failure(url, "HTTP \(status) without a Location") }
            return .redirect(location)
        }
        guard status == 200 else { throw failure(url, "HTTP \(status)") }

        var total: Int64 = 0
        var flushed: Int64 = 0
        let announced = header("content-length").flatMap { Int64($0) }
        func emit(_ bytes: ArraySlice<UInt8>) throws {
            total += Int64(bytes.count)
            guard total <= limits.size else { throw ImageError.tooLarge("\(Names.clip(url)): larger than \(Sizes.human(limits.size))") }
            try Files.writeAll(out, bytes, what: "write image")
            // the disk writes back while the network delivers: the final
            // fsync has little left to wait for
            if total - flushed >= 8 << 20 {
                _ = cb_start_writeback(out, flushed, total - flushed)
                flushed = total
            }
            limits.digest?.add(bytes)
            limits.progress?(total, announced)
        }
        /// Writes the next `count` body bytes as they arrive.
        func copy(_ count: Int64, what: String) throws {
            var left = count
            while left > 0 {
                if conn.pending.isEmpty {
                    guard try conn.readMore() else { throw failure(url, "truncated: \(what)") }
                }
                let take = Int(min(Int64(conn.pending.count), left))
                try emit(conn.pending[0..<take])
                conn.pending.removeFirst(take)
                left -= Int64(take)
            }
        }
        if header("transfer-encoding")?.lowercased().contains("chunked") == true {
            while true {
                let size = try chunkSize(conn, url: url)
                if size == 0 { break }
                guard size <= limits.size - total else {
                    throw ImageError.tooLarge("\(Names.clip(url)): a chunk of \(size) bytes makes it larger than \(Sizes.human(limits.size))")
                }
                try copy(size, what: "a chunk ended early")
                while conn.pending.count < 2 {
                    guard try conn.readMore() else { throw failure(url, "truncated after a chunk") }
                }
                guard conn.pending[0] == 13, conn.pending[1] == 10 else { throw failure(url, "bad chunked encoding: no CRLF after a chunk") }
                conn.pending.removeFirst(2)
            }
        } else if let lenText = header("content-length") {
            guard let len = Int64(lenText), len >= 0 else { throw failure(url, "bad Content-Length '\(Names.clip(lenText))'") }
            guard len <= limits.size else { throw ImageError.tooLarge("\(Names.clip(url)): larger than \(Sizes.human(limits.size))") }
            try copy(len, what: "\(len) bytes announced")
        } else {
            repeat {
                try emit(conn.pending[...])
                conn.pending.removeAll(keepingCapacity: true)
            } while try conn.readMore()
        }
        return .body(total)
    }

    /// Reads a chunk-size line: hex digits (a size that fits an Int64),
    /// optional `;extensions`, CRLF.
    static func chunkSize(_ conn: Connection, url: String) throws -> Int64 {
        var lineEnd = find(conn.pending, [13, 10])
        while lineEnd == nil {
            guard conn.pending.count <= maxChunkLine else { throw failure(url, "bad chunked encoding: chunk-size line too long") }
            guard try conn.readMore() else { throw failure(url, "truncated before a chunk size") }
            lineEnd = find(conn.pending, [13, 10])
        }
        guard lineEnd! <= maxChunkLine else { throw failure(url, "bad chunked encoding: chunk-size line too long") }
        let line = String(decoding: conn.pending[..<lineEnd!], as: UTF8.self)
        conn.pending.removeFirst(lineEnd! + 2)
        let digits = Substring(line.prefix { $0 != ";" }).trimmingCharacters()
        guard !digits.isEmpty, digits.count <= 16, digits.allSatisfy(\.isHexDigit), let size = Int64(digits, radix: 16) else {
            throw failure(url, "bad chunked encoding: chunk size '\(Names.clip(line))'")
        }
        return size
    }

    /// One connection: the socket, TLS on it when https, and bytes read but
    /// not used yet. Every read waits at most the read timeout, and never
    /// past the deadline.
    final class Connection {
        let url: String
        let limits: Limits
        var fd: Int32 = -1
        var tls: OpaquePointer?
        var pending: [UInt8] = []
        private var buffer = [UInt8](repeating: 0, count: 1 << 16)

        init(url: String, limits: Limits) { self.url = url; self.limits = limits }

        /// The timeout for the next socket operation; throws past the deadline.
        func nextTimeout() throws -> Double {
            let left = limits.deadline - now()
            guard left > 0 else { throw Download.failure(url, "not done within the download's deadline") }
            return min(limits.readTimeout, left)
        }

        func arm() throws {
            let t = try nextTimeout()
            var tv = timeval(tv_sec: Int(t), tv_usec: Int((t - t.rounded(.down)) * 1e6))
            if tv.tv_sec == 0 && tv.tv_usec == 0 { tv.tv_usec = 1000 }
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }

        /// Why a read or write returned nothing in time.
        func timedOut() -> ImageError {
            if now() >= limits.deadline { return Download.failure(url, "not done within the download's deadline") }
            return Download.failure(url, "the server sent nothing for \(Int(limits.readTimeout)) s")
        }

        func send(_ bytes: [UInt8]) throws {
            var off = 0
            while off < bytes.count {
                try arm()
                let n: Int
                if let tls {
                    n = bytes.withUnsafeBytes { p in cb_tls_client_send(tls, p.baseAddress! + off, p.count - off) }
                    guard n > 0 else { throw Download.failure(url, "TLS send failed or timed out") }
                } else {
                    n = bytes.withUnsafeBytes { p in Glibc.send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL)) }
                    if n < 0 {
                        let e = currentErrno()
                        if e == EINTR { continue }
                        if e == EAGAIN || e == EWOULDBLOCK { throw timedOut() }
                        throw SystemError("send to \(Names.clip(url))", errno: e)
                    }
                }
                off += n
            }
        }

        /// Appends the next bytes to `pending`; false at the end of the stream.
        func readMore() throws -> Bool {
            while true {
                try arm()
                let n: Int
                if let tls {
                    n = buffer.withUnsafeMutableBytes { p in cb_tls_client_recv(tls, p.baseAddress, p.count) }
                    if n < 0 {
                        if now() >= limits.deadline { throw timedOut() }
                        throw Download.failure(url, "TLS receive failed or timed out")
                    }
                } else {
                    n = buffer.withUnsafeMutableBytes { p in Glibc.read(fd, p.baseAddress, p.count) }
                    if n < 0 {
                        let e = currentErrno()
                        if e == EINTR { continue }
                        if e == EAGAIN || e == EWOULDBLOCK { throw timedOut() }
                        throw SystemError("read from \(Names.clip(url))", errno: e)
                    }
                }
                if n == 0 { return false }
                pending += buffer[0..<n]
                return true
            }
        }

        func close() {
            if let tls { cb_tls_client_close(tls) }
            tls = nil
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    static func find(_ a: [UInt8], _ needle: [UInt8]) -> Int? {
        guard a.count >= needle.count else { return nil }
        for i in 0...(a.count - needle.count) where a[i] == needle[0] && Array(a[i..<i + needle.count]) == needle { return i }
        return nil
    }

    /// Connects to the first address of `host` that answers within `timeout`
    /// (on Linux, SO_SNDTIMEO bounds connect too).
    static func connect(_ host: String, _ port: Int, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
            throw ImageError.invalid("cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
                close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw ImageError.invalid("cannot connect to \(host):\(port)")
    }
}

extension String {
    func trimmingSpacesAndTabs() -> String { Substring(self).trimmingCharacters() }
}

/// SHA-256 of a stream, fed as it passes (nettle, through the TLS loader).
final class StreamingSHA256: @unchecked Sendable {
    private var ctx: UnsafeMutableRawPointer?

    init?() {
        guard let c = cb_sha256_begin() else { return nil }
        ctx = c
    }

    func add(_ bytes: ArraySlice<UInt8>) {
        guard let ctx else { return }
        bytes.withUnsafeBytes { cb_sha256_add(ctx, $0.baseAddress, $0.count) }
    }

    /// The hex digest; the state is gone after this.
    func finish() -> String {
        guard let c = ctx else { return "" }
        ctx = nil
        var hex = [CChar](repeating: 0, count: 65)
        cb_sha256_end(c, &hex)
        return String(nulTerminated: hex)
    }

    deinit { if ctx != nil { _ = finish() } }
}
