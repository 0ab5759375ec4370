import CShims
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// JSON POSTs to `install.webhook` (`http://` or `https://host[:port]/path`),
/// with retries. HTTPS goes through the GnuTLS client the image downloads
/// use: the server's certificate must chain to the system's trust store (the
/// PE carries /etc/ssl/certs/ca-certificates.crt) or to `caFile`, and name
/// the host.
public struct Webhook: Sendable {
    public let host: String
    public let port: UInt16
    public let path: String
    public let tls: Bool
    /// PEM file of trusted CAs for https; nil = the system's trust store.
    /// Defaults to `$SSL_CERT_FILE` when set, as for https images.
    public var caFile: String?
    public var attempts = 4
    public var timeoutSeconds = 5

    /// The result of posting one event.
    public struct Outcome: Sendable, Equatable {
        /// HTTP status of the last attempt, nil when none got an answer.
        public var status: Int?
        /// Why the last attempt failed (connection, TLS, bad answer), nil on an answer.
        public var error: String?
        public var attempts: Int
        public var delivered: Bool { status.map { (200..<300).contains($0) } ?? false }
    }

    public init?(_ url: String) {
        self.init(url, caFile: Webhook.environmentCAFile())
    }

    public init?(_ url: String, caFile: String?) {
        let lower = url.lowercased()
        if lower.hasPrefix("http://") { tls = false } else if lower.hasPrefix("https://") { tls = true } else { return nil }
        self.caFile = caFile
        let rest = url.dropFirst(tls ? 8 : 7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        let defaultPort: UInt16 = tls ? 443 : 80
        if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            port = after.hasPrefix(":") ? (UInt16(after.dropFirst()) ?? 0) : defaultPort
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            port = UInt16(hostPort[hostPort.index(after: colon)...]) ?? 0
        } else {
            host = String(hostPort); port = defaultPort
        }
        if host.isEmpty || port == 0 { return nil }
        if !path.allSatisfy({ $0.isASCII && $0 > " " }) { return nil }
    }

    /// `$SSL_CERT_FILE`, the trust file the daemon's https downloads honour too.
    public static func environmentCAFile() -> String? {
        guard let f = getenv("SSL_CERT_FILE"), f.pointee != 0 else { return nil }
        return String(cString: f)
    }

    /// `https://host:port` for messages.
    public var origin: String {
        (tls ? "https://" : "http://") + (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
    }

    /// Posts one event; returns the HTTP status of the last attempt, nil
    /// when none got an answer.
    @discardableResult
    public func post(_ body: JSONValue) -> Int? { deliver(body).status }

    /// Posts one event; retries with backoff (1 s, 2 s, 4 s) when there is
    /// no answer or a 5xx. A 4xx or a certificate the client refuses is
    /// final: retrying will not change it.
    public func deliver(_ body: JSONValue) -> Outcome {
        var out = Outcome(status: nil, error: nil, attempts: 0)
        let text = body.serialized()
        for i in 0..<attempts {
            out.attempts = i + 1
            do {
                out.status = try once(text); out.error = nil
            } catch let e as WebhookError {
                out.status = nil; out.error = e.description
                if e.isFinal { return out }
            } catch {
                out.status = nil; out.error = "\(error)"
            }
            if let s = out.status, (200..<300).contains(s) || (400..<500).contains(s) { return out }
            if i + 1 < attempts { sleep(UInt32(1 << i)) }
        }
        return out
    }

    func once(_ body: String) throws -> Int {
        let fd = try connect()
        defer { close(fd) }
        let conn = try Connection(fd: fd, tls: tls ? self : nil)
        let hostHeader = (host.contains(":") ? "[\(host)]" : host) + ((port == (tls ? 443 : 80)) ? "" : ":\(port)")
        let req = "POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: cloudbios-install\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        try conn.send(Array(req.utf8))
        // The status line: read until the first CRLF (or the peer closes).
        var got: [UInt8] = []
        while !got.contains(10), got.count < 4096 {
            let chunk = try conn.receive(512)
            if chunk.isEmpty { break }
            got += chunk
        }
        let line = String(decoding: got, as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else {
            throw WebhookError.badAnswer(got.isEmpty ? "no answer" : "not HTTP: \(line.prefix(60))")
        }
        return code
    }

    func connect() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
            throw WebhookError.connect("cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        var last = ECONNREFUSED
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd < 0 { last = currentErrno(); continue }
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
            last = currentErrno()
            close(fd)
        }
        throw WebhookError.connect("cannot connect to \(host):\(port): \(String(cString: strerror(last)))")
    }

    /// One connection: plain, or a GnuTLS session on the socket (owns it).
    final class Connection {
        let fd: Int32
        let session: OpaquePointer?

        init(fd: Int32, tls hook: Webhook?) throws {
            self.fd = fd
            guard let hook else { session = nil; return }
            var err = [CChar](repeating: 0, count: 512)
            let s = cb_tls_client_connect_verified(fd, hook.host, hook.caFile, &err, err.count)
            guard let s else {
                let why = String(nulTerminated: err)
                throw WebhookError.tls(why.isEmpty ? "TLS handshake failed" : why)
            }
            session = s
        }

        deinit { if let session { cb_tls_client_close(session) } }

        func send(_ bytes: [UInt8]) throws {
            guard let session else { return try Files.writeAll(fd, bytes, what: "webhook write") }
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { p in cb_tls_client_send(session, p.baseAddress! + off, p.count - off) }
                guard n > 0 else { throw WebhookError.badAnswer("TLS send failed") }
                off += n
            }
        }

        func receive(_ max: Int) throws -> [UInt8] {
            var buf = [UInt8](repeating: 0, count: max)
            let n: Int
            if let session {
                n = buf.withUnsafeMutableBytes { p in cb_tls_client_recv(session, p.baseAddress, p.count) }
                guard n >= 0 else { throw WebhookError.badAnswer("TLS receive failed or timed out") }
            } else {
                n = try buf.withUnsafeMutableBytes { p in try syscall("webhook read") { read(fd, p.baseAddress, p.count) } }
            }
            return Array(buf[0..<n])
        }
    }
}

public enum WebhookError: Error, Sendable, CustomStringConvertible {
    case connect(String)
    /// The TLS handshake failed; the message says why (GnuTLS's words).
    case tls(String)
    case badAnswer(String)

    public var description: String {
        switch self {
        case .connect(let m), .tls(let m): m
        case .badAnswer(let m): "bad answer: \(m)"
        }
    }

    /// A certificate the client does not accept (untrusted issuer, wrong
    /// name, expired, unreadable CA file) fails the same way every time.
    var isFinal: Bool {
        if case .tls(let m) = self { return m.lowercased().contains("certificate") }
        return false
    }
}
