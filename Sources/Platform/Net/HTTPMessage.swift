/// One header line: a name and its value.
public struct HTTPField: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) { self.name = name; self.value = value }
}

/// A request as the client sends it: one per connection (`Connection:
/// close`), with `Host`, `User-Agent` and, when there is a body,
/// `Content-Length` added.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: HTTPURL
    public var headers: [HTTPField]
    public var body: [UInt8]
    /// A body streamed from this file instead (`size` bytes of it, from
    /// its start): a large upload never sits in memory.
    public var bodyFile: (path: String, size: Int64)?

    public init(_ method: String = "GET", _ url: HTTPURL, headers: [HTTPField] = [], body: [UInt8] = []) {
        self.method = method; self.url = url; self.headers = headers; self.body = body
    }

    /// The request line and headers, ending with the empty line. A header
    /// with a line break in it is refused, never sent.
    func encodedHead(userAgent: String, keepAlive: Bool = false) throws(NetError) -> [UInt8] {
        var head = "\(method) \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\nUser-Agent: \(userAgent)\r\n"
        for f in headers {
            guard !f.name.isEmpty, !(f.name + f.value).utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
                throw .badRequestHeader(f.name)
            }
            head += "\(f.name): \(f.value)\r\n"
        }
        if let f = bodyFile {
            head += "Content-Length: \(f.size)\r\n"
        } else if !body.isEmpty || ["POST", "PUT", "PATCH"].contains(method) {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += keepAlive ? "\r\n" : "Connection: close\r\n\r\n"
        return Array(head.utf8)
    }
}

/// The status line and headers of an answer.
public struct HTTPResponseHead: Sendable, Equatable {
    /// Longest head the client reads (status line, headers, CRLFs).
    public static let maxSize = 64 << 10

    public var status: Int
    public var reason: String
    public var headers: [HTTPField]

    public init(status: Int, reason: String = "", headers: [HTTPField] = []) {
        self.status = status; self.reason = reason; self.headers = headers
    }

    /// The first value of a header (names in any case).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Every value of a header, in order.
    public func values(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    /// Where the blank line that ends a head starts in `bytes` (at its
    /// CRLFCRLF), looking from `from`; nil when it has not arrived yet.
    public static func end(in bytes: UnsafeRawBufferPointer, from: Int = 0) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var i = max(0, from)
        while i + 3 < bytes.count {
            if bytes[i + 3] != 10 { i += bytes[i + 3] == 13 ? 1 : 4; continue }
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 { return i }
            i += 1
        }
        return nil
    }

    /// Parses a head: `HTTP/1.x NNN reason`, then `Name: value` lines,
    /// separated by CRLF (the blank line that ends it not included).
    public static func parse(_ bytes: some Collection<UInt8>) throws(NetError) -> HTTPResponseHead {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        let statusLine = lines.popFirst() ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0", parts[1].count == 3,
              parts[1].allSatisfy(\.isASCII), let status = Int(parts[1]), status >= 100 else {
            throw .badStatusLine(String(statusLine))
        }
        var head = HTTPResponseHead(status: status, reason: parts.count > 2 ? String(parts[2]) : "")
        for line in lines {
            // no obsolete line folding, no line without a name
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  line[..<colon].allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\r" && $0 != "\n" }) else {
                throw .malformedHead
            }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            head.headers.append(HTTPField(String(line[..<colon]), String(value.reversed().drop { $0 == " " || $0 == "\t" }.reversed())))
        }
        return head
    }

    /// How the body that follows is delimited.
    public enum Framing: Sendable, Equatable {
        /// No body (a HEAD request, 1xx, 204, 304).
        case none
        case length(Int64)
        case chunked
        /// Until the server closes the connection.
        case untilClose
    }

    /// The body's framing (RFC 9112 section 6.3): chunked when that is the
    /// last transfer coding, else Content-Length (all copies equal), else
    /// until the end of the connection.
    public func framing(requestMethod: String) throws(NetError) -> Framing {
        if requestMethod == "HEAD" || (100..<200).contains(status) || status == 204 || status == 304 { return .none }
        let codings = values("transfer-encoding").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: " \t").lowercased() }
        if !codings.isEmpty { return codings.last == "chunked" ? .chunked : .untilClose }
        let lengths = values("content-length").flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { $0.trimmingCharacters(in: " \t") }
        guard let first = lengths.first else { return .untilClose }
        guard lengths.allSatisfy({ $0 == first }), (1...18).contains(first.count),
              first.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int64(first) else {
            throw .badContentLength(values("content-length").joined(separator: ", "))
        }
        return .length(n)
    }
}

/// A whole answer, its body read into memory (bounded by the caller).
public struct HTTPResponse: Sendable {
    /// Where it came from, after redirects.
    public var url: HTTPURL
    public var head: HTTPResponseHead
    public var body: [UInt8]

    public var status: Int { head.status }
    public func header(_ name: String) -> String? { head.header(name) }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
