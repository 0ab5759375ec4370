import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// JSON POSTs to `install.webhook` (`http://` or `https://host[:port]/path`),
/// with retries, through Platform's HTTP client: for https the server's
/// certificate must chain to the system's trust store (the PE carries
/// /etc/ssl/certs/ca-certificates.crt) or to `caFile`, and name the host.
public struct Webhook: Sendable {
    public let url: HTTPURL
    public var host: String { url.host }
    public var port: UInt16 { UInt16(url.port) }
    public var path: String { url.target }
    public var tls: Bool { url.tls }
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
        guard let u = try? HTTPURL(parsing: url) else { return nil }
        self.url = u
        self.caFile = caFile
    }

    /// `$SSL_CERT_FILE`, the trust file the daemon's https downloads honour too.
    public static func environmentCAFile() -> String? {
        if case .authorities(let f) = TLSTrust.environment { return f }
        return nil
    }

    /// `https://host:port` for messages.
    public var origin: String { url.origin }

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
            } catch {
                out.status = nil; out.error = error.description
                if error.isFinal { return out }
            }
            if let s = out.status, (200..<300).contains(s) || (400..<500).contains(s) { return out }
            if i + 1 < attempts { sleep(UInt32(1 << i)) }
        }
        return out
    }

    /// One POST: the answer's status (its body is not read).
    func once(_ body: String) throws(WebhookError) -> Int {
        let client = HTTPClient(trust: caFile.map { .authorities($0) } ?? .system, timeout: Double(timeoutSeconds),
                                userAgent: "cloudbios-install")
        let request = HTTPRequest("POST", url, headers: [HTTPField("Content-Type", "application/json")], body: Array(body.utf8))
        do {
            return try client.open(request, deadline: .after(Double(timeoutSeconds) * 6)).head.status
        } catch {
            throw WebhookError(error)
        }
    }
}

public enum WebhookError: Error, Sendable, CustomStringConvertible {
    case connect(String)
    /// The TLS handshake failed; the message says why (GnuTLS's words).
    case tls(String)
    case badAnswer(String)

    init(_ e: NetError) {
        switch e {
        case .resolve, .connect: self = .connect("\(e)")
        case .tls(let why): self = .tls(why)
        case .noAnswer: self = .badAnswer("no answer")
        case .badStatusLine(let line): self = .badAnswer("not HTTP: \(line.prefix(60))")
        default: self = .badAnswer("\(e)")
        }
    }

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
