import Config
import CShims
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 client for the daemon's REST API (plain or TLS through
/// GnuTLS). One request per connection.
struct APIClient {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: JSONValue? { try? JSONValue.parse(body) }
        /// The API's `{"error": …}` message, or the status line.
        var errorMessage: String { json?["error"]?.stringValue ?? "HTTP \(status)" }
    }

    var scheme: String
    var host: String
    var port: Int
    var token: String?
    var caFile: String?
    var insecure: Bool

    init(url: String, caFile: String?, insecure: Bool) throws {
        var rest = Substring(url)
        if rest.hasPrefix("https://") { scheme = "https"; rest = rest.dropFirst(8) }
        else if rest.hasPrefix("http://") { scheme = "http"; rest = rest.dropFirst(7) }
        else { throw CLIError("--url must start with http:// or https://") }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let hp = HostPort.parse(String(rest)) ?? HostPort.parse(String(rest) + (scheme == "https" ? ":443" : ":80")) else {
            throw CLIError("--url has no valid host:port")
        }
        host = hp.host; port = hp.port
        self.caFile = caFile
        self.insecure = insecure
    }

    func request(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> Response {
        let fd = try connectTCP()
        defer { close(fd) }
        var tls: OpaquePointer? = nil
        if scheme == "https" {
            var err = [CChar](repeating: 0, count: 256)
            tls = cb_tls_client_connect(fd, host, caFile, insecure ? 1 : 0, &err, err.count)
            if tls == nil {
                let why = String(nulTerminated: err)
                throw CLIError("\(host):\(port): \(why) (pass --cacert STATE/tls/cert.pem, or --insecure)")
            }
        }
        defer { if let tls { cb_tls_client_close(tls) } }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUser-Agent: cloudbios-cli\r\nAccept: application/json\r\nConnection: close\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        let out = Array(head.utf8) + (body ?? [])
        try send(fd, tls, out)
        var raw: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n: Int = buf.withUnsafeMutableBytes { p in
                if let tls { return cb_tls_client_recv(tls, p.baseAddress, p.count) }
                return read(fd, p.baseAddress, p.count)
            }
            if n < 0 && currentErrno() == EINTR { continue }
            if n <= 0 { break }
            raw += buf[0..<n]
        }
        return try Self.parse(raw)
    }

    private func send(_ fd: Int32, _ tls: OpaquePointer?, _ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n: Int = bytes.withUnsafeBytes { p in
                if let tls { return cb_tls_client_send(tls, p.baseAddress! + off, p.count - off) }
                return write(fd, p.baseAddress! + off, p.count - off)
            }
            if n < 0 && currentErrno() == EINTR { continue }
            if n <= 0 { throw CLIError("\(host):\(port): connection lost while sending") }
            off += n
        }
    }

    private func connectTCP() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let h = host == "localhost" ? "127.0.0.1" : host
        guard getaddrinfo(h, String(port), &hints, &res) == 0, let first = res else {
            throw CLIError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        var lastErr: Int32 = 0
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd >= 0 {
                if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
                lastErr = currentErrno()
                close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw CLIError("cannot connect to the daemon at \(scheme)://\(host):\(port): \(String(cString: strerror(lastErr))) (is `cloudbios daemon` running?)")
    }

    static func parse(_ raw: [UInt8]) throws -> Response {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = raw.indices.first(where: { raw.count >= $0 + 4 && Array(raw[$0..<$0 + 4]) == sep }) else {
            throw CLIError("malformed HTTP response")
        }
        let head = String(decoding: raw[..<end], as: UTF8.self).split(separator: "\r\n")
        let statusParts = head.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw CLIError("malformed HTTP status line") }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let c = line.firstIndex(of: ":") else { continue }
            headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters()
        }
        var body = Array(raw[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true { body = dechunk(body) }
        return Response(status: status, headers: headers, body: body)
    }

    static func dechunk(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            var j = i
            while j + 1 < b.count && !(b[j] == 13 && b[j + 1] == 10) { j += 1 }
            let sizeText = String(decoding: b[i..<j], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(), radix: 16), size > 0 else { break }
            let start = j + 2
            guard start + size <= b.count else { out += b[start...]; break }
            out += b[start..<start + size]
            i = start + size + 2
        }
        return out
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
extension String {
    func trimmingCharacters() -> String { Substring(self).trimmingCharacters() }
}
