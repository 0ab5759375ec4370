import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// JSON POSTs to `install.webhook` (http://host[:port]/path), with retries.
public struct Webhook: Sendable {
    public let host: String
    public let port: UInt16
    public let path: String
    public var attempts = 4
    public var timeoutSeconds = 5

    public init?(_ url: String) {
        guard url.lowercased().hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            port = after.hasPrefix(":") ? (UInt16(after.dropFirst()) ?? 0) : 80
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            port = UInt16(hostPort[hostPort.index(after: colon)...]) ?? 0
        } else {
            host = String(hostPort); port = 80
        }
        if host.isEmpty || port == 0 { return nil }
    }

    /// Posts one event; retries with backoff (1 s, 2 s, 4 s). Returns the
    /// HTTP status of the last attempt, nil when none got an answer.
    @discardableResult
    public func post(_ body: JSONValue) -> Int? {
        var status: Int?
        for i in 0..<attempts {
            status = try? once(body.serialized())
            if let s = status, (200..<300).contains(s) { return s }
            if let s = status, (400..<500).contains(s) { return s }  // the receiver refuses: retrying will not help
            if i + 1 < attempts { sleep(UInt32(1 << i)) }
        }
        return status
    }

    func once(_ body: String) throws -> Int {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
            throw SystemError("resolve \(host)", errno: EHOSTUNREACH)
        }
        defer { freeaddrinfo(res) }
        let fd = try syscall("socket") { socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        try syscall("connect \(host):\(port)") { connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) }
        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let req = "POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: cloudbios-install\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        try Files.writeAll(fd, Array(req.utf8), what: "webhook write")
        var buf = [UInt8](repeating: 0, count: 512)
        let n = try buf.withUnsafeMutableBytes { p in try syscall("webhook read") { read(fd, p.baseAddress, p.count) } }
        let line = String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else {
            throw SystemError("webhook: bad answer", errno: EPROTO)
        }
        return code
    }
}
