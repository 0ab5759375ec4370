import Config

/// What the server knows about a request once its headers have arrived.
public struct RequestHead: Sendable {
    public var method: String
    /// Percent-decoded path, without the query.
    public var path: String
    /// Header names lowercased.
    public var headers: [String: String]
    public var query: [String: String]
    public var cookies: [String: String]
    public var clientIP: String

    public init(method: String, path: String, headers: [String: String] = [:], query: [String: String] = [:],
                cookies: [String: String] = [:], clientIP: String = "127.0.0.1") {
        self.method = method
        self.path = path
        var h: [String: String] = [:]
        for (k, v) in headers { h[k.lowercased()] = v }
        self.headers = h
        self.query = query
        self.cookies = cookies
        self.clientIP = clientIP
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
    public var contentLength: Int64? { header("content-length").flatMap { Int64($0.trimmingSpaces) } }
}

/// An answer. Bodies are bytes in memory or a byte range of an open file
/// (the server owns and closes the descriptor).
public struct HTTPResponse: Sendable {
    public enum Body: Sendable {
        case bytes([UInt8])
        case file(fd: Int32, offset: Int64, length: Int64)
        /// 101 Switching Protocols; the handler gets the raw connection.
        case upgrade(@Sendable (WebSocketConnection) -> Void)
    }
    public var status: Int
    public var headers: [(String, String)]
    public var body: Body

    public init(status: Int, headers: [(String, String)] = [], body: Body = .bytes([])) {
        self.status = status; self.headers = headers; self.body = body
    }

    public static func json(_ value: JSONValue, status: Int = 200, headers: [(String, String)] = []) -> HTTPResponse {
        var b = value.bytes
        b.append(0x0a)
        return HTTPResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: .bytes(b))
    }

    /// A VM's status as JSON, written straight into the body.
    public static func json(_ vm: VMStatus, status: Int = 200) -> HTTPResponse {
        var b: [UInt8] = []
        b.reserveCapacity(512)
        vm.writeJSON(into: &b)
        b.append(0x0a)
        return HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: .bytes(b))
    }

    /// A list of VM statuses as a JSON array, written straight into the body.
    public static func json(_ vms: [VMStatus]) -> HTTPResponse {
        var b: [UInt8] = []
        b.reserveCapacity(512 * max(1, vms.count))
        vms.writeJSON(into: &b)
        b.append(0x0a)
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: .bytes(b))
    }

    public static func error(_ status: Int, _ message: String, headers: [(String, String)] = []) -> HTTPResponse {
        json(.object(["error": .string(message)]), status: status, headers: headers)
    }

    /// A domain error as the API answers it: `{"error": message}` with
    /// the status of its kind.
    public static func error(_ e: any DomainError) -> HTTPResponse { error(e.kind.status, e.description) }

    public static func text(_ s: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", contentType)], body: .bytes(Array(s.utf8)))
    }

    public static func noContent() -> HTTPResponse { HTTPResponse(status: 204) }

    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0.lowercased() == n }?.1
    }

    public var bodyBytes: [UInt8] {
        if case .bytes(let b) = body { return b }
        return []
    }
}

extension ErrorKind {
    /// The HTTP status each kind of error is answered with: the one place
    /// where the system's errors meet HTTP.
    public var status: Int {
        switch self {
        case .badRequest: 400
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .invalid: 422
        case .failed: 500
        case .unavailable: 503
        case .noSpace: 507
        }
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

/// Percent-decoding as a server applies it to a URL path.
public func percentDecode(_ s: String) -> String {
    var out: [UInt8] = []
    let u = Array(s.utf8)
    var i = 0
    func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
    while i < u.count {
        if u[i] == 0x25, i + 2 < u.count, let h = hex(u[i + 1]), let l = hex(u[i + 2]) {
            out.append(h << 4 | l); i += 3
        } else {
            out.append(u[i]); i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Parses a `Cookie:` header.
public func parseCookies(_ header: String?) -> [String: String] {
    guard let header else { return [:] }
    var out: [String: String] = [:]
    for part in header.split(separator: ";") {
        guard let eq = part.firstIndex(of: "=") else { continue }
        out[part[..<eq].trimmingSpaces] = part[part.index(after: eq)...].trimmingSpaces
    }
    return out
}
