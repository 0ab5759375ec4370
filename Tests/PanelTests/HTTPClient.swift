#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// A deliberately small HTTP/1.1 client over a TCP socket, for tests.
struct TestHTTP {
    var port: Int

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: JSONValue? { try? JSONValue.parse(body) }
        var error: String? { json?["error"]?.stringValue }
    }

    func connect() throws -> Int32 {
        let fd = try syscall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { let e = currentErrno(); close(fd); throw SystemError("connect", errno: e) }
        return fd
    }

    /// Sends bytes; returns false when the peer stopped reading (EPIPE/ECONNRESET).
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if currentErrno() == EINTR { continue }; return false }
            off += n
        }
        return true
    }

    /// Reads one response: to the end of its Content-Length, else to EOF.
    static func readAll(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        var want: Int? = nil
        while true {
            if want == nil, let end = out.indices.first(where: { i in i + 3 < out.count && out[i] == 13 && out[i + 1] == 10 && out[i + 2] == 13 && out[i + 3] == 10 }) {
                let head = String(decoding: out[0..<end], as: UTF8.self).lowercased()
                if let l = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
                   let n = Int(l.dropFirst("content-length:".count).testTrimmed) {
                    want = end + 4 + n
                } else {
                    want = Int.max
                }
            }
            if let want, out.count >= want { break }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && currentErrno() == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func parse(_ raw: [UInt8]) -> Reply {
        guard let end = raw.indices.first(where: { i in i + 3 < raw.count && raw[i] == 13 && raw[i + 1] == 10 && raw[i + 2] == 13 && raw[i + 3] == 10 }) else {
            return Reply(status: 0, headers: [:], body: raw)
        }
        let head = String(decoding: raw[0..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        var headers: [String: String] = [:]
        for l in lines {
            guard let c = l.firstIndex(of: ":") else { continue }
            let k = l[..<c].lowercased()
            let v = String(l[l.index(after: c)...]).testTrimmed
            headers[k] = headers[k].map { $0 + "\n" + v } ?? v
        }
        var body = Array(raw[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" { body = dechunk(body) }
        return Reply(status: statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0, headers: headers, body: body)
    }

    static func dechunk(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            guard let eol = b[i...].indices.first(where: { $0 + 1 < b.count && b[$0] == 13 && b[$0 + 1] == 10 }) else { break }
            let n = Int(String(decoding: b[i..<eol], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
            if n == 0 { break }
            out += b[(eol + 2)..<min(b.count, eol + 2 + n)]
            i = eol + 2 + n + 2
        }
        return out
    }

    func head(_ method: String, _ path: String, _ headers: [String: String], contentLength: Int?) -> [UInt8] {
        var s = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { s += "\(k): \(v)\r\n" }
        if let contentLength { s += "Content-Length: \(contentLength)\r\n" }
        s += "\r\n"
        return Array(s.utf8)
    }

    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) async throws -> Reply {
        try await offPool { try requestSync(method, path, headers: headers, body: body) }
    }

    func json(_ method: String, _ path: String, _ body: String, headers: [String: String] = [:]) async throws -> Reply {
        try await offPool { try jsonSync(method, path, body, headers: headers) }
    }

    /// Streams `total` bytes of a pattern; returns the reply and the checksum of what was sent.
    func upload(_ path: String, headers: [String: String], total: Int) async throws -> (Reply, UInt64) {
        try await offPool {
            var sum: UInt64 = 0
            let r = try uploadSync(path, headers: headers, total: total) { off, buf in
                for i in buf.indices { buf[i] = UInt8(truncatingIfNeeded: (off + i) &* 31 >> 3) }
                for b in buf { sum = sum &* 31 &+ UInt64(b) }
            }
            return (r, sum)
        }
    }

    func requestSync(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws -> Reply {
        let fd = try connect()
        defer { close(fd) }
        let needsLength = body != nil || ["POST", "PUT", "PATCH"].contains(method)
        TestHTTP.send(fd, head(method, path, headers, contentLength: needsLength ? (body?.count ?? 0) : nil) + (body ?? []))
        return TestHTTP.parse(TestHTTP.readAll(fd))
    }

    func jsonSync(_ method: String, _ path: String, _ body: String, headers: [String: String] = [:]) throws -> Reply {
        var h = headers
        if h["Content-Type"] == nil { h["Content-Type"] = "application/json" }
        return try requestSync(method, path, headers: h, body: Array(body.utf8))
    }

    /// Streams `total` bytes produced chunk by chunk (never whole in memory).
    func uploadSync(_ path: String, headers: [String: String], total: Int, chunk: Int = 256 << 10,
                fill: (Int, inout [UInt8]) -> Void) throws -> Reply {
        let fd = try connect()
        defer { close(fd) }
        TestHTTP.send(fd, head("PUT", path, headers, contentLength: total))
        var buf = [UInt8](repeating: 0, count: chunk)
        var sent = 0
        while sent < total {
            let n = min(chunk, total - sent)
            if buf.count != n { buf = [UInt8](repeating: 0, count: n) }
            fill(sent, &buf)
            if !TestHTTP.send(fd, buf) { break }
            sent += n
        }
        return TestHTTP.parse(TestHTTP.readAll(fd))
    }
}

extension StringProtocol {
    var testTrimmed: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

func rssBytes() -> Int {
    guard let s = Files.readTrimmed("/proc/self/statm") else { return 0 }
    let f = s.split(separator: " ")
    return (Int(f[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Runs blocking socket work on its own thread, so the Swift concurrency pool
/// stays free for the server's async work.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
        let job = ThreadJob { cont.resume(with: Result { try body() }) }
        let box = Unmanaged.passRetained(job).toOpaque()
        var tid = pthread_t()
        pthread_create(&tid, nil, { arg in
            Unmanaged<ThreadJob>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        pthread_detach(tid)
    }
}

final class ThreadJob: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
