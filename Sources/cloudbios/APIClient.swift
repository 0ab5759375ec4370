import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The CLI's side of the daemon's REST API, on Platform's HTTP client (plain
/// or TLS): one request per connection, API errors as one-line CLI errors.
struct APIClient {
    struct Response {
        var status: Int
        /// Header names in lower case.
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: JSONValue? { try? JSONValue.parse(body) }
        /// The API's `{"error": …}` message, or the status line.
        var errorMessage: String { json?["error"]?.stringValue ?? "HTTP \(status)" }
    }

    /// Longest wait for the daemon's next bytes.
    static let timeout: Double = 300
    /// Largest answer read (a serial log is the largest).
    static let maxBody = 256 << 20

    var url: HTTPURL
    var token: String?
    var caFile: String?
    var insecure: Bool

    var scheme: String { url.tls ? "https" : "http" }
    var host: String { url.host }
    var port: Int { url.port }

    /// `url` names the daemon; a path in it is ignored.
    init(url: String, caFile: String?, insecure: Bool) throws {
        let origin = url.firstRange(of: "://").map { url[..<$0.upperBound] + url[$0.upperBound...].prefix { $0 != "/" } } ?? Substring(url)
        do throws(NetError) {
            self.url = try HTTPURL(parsing: String(origin))
        } catch {
            throw CLIError(error == .badURL(.scheme) ? "--url must start with http:// or https://" : "--url has no valid host:port")
        }
        self.caFile = caFile
        self.insecure = insecure
    }

    func request(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> Response {
        var target = url
        target.target = path
        var headers = [HTTPField("Accept", "application/json")]
        if let token { headers.append(HTTPField("Authorization", "Bearer \(token)")) }
        if body != nil { headers.append(HTTPField("Content-Type", "application/json")) }
        let trust: TLSTrust = insecure ? .none : caFile.map { .pinned($0) } ?? .system
        let client = HTTPClient(trust: trust, timeout: Self.timeout, userAgent: "cloudbios-cli")
        do throws(NetError) {
            let r = try client.fetch(HTTPRequest(method, target, headers: headers, body: body ?? []), maxBody: Self.maxBody)
            var fields: [String: String] = [:]
            for f in r.head.headers { fields[f.name.lowercased()] = f.value }
            return Response(status: r.status, headers: fields, body: r.body)
        } catch {
            throw cliError(error)
        }
    }

    /// What the CLI says when the daemon cannot be reached or answers nonsense.
    func cliError(_ e: NetError) -> CLIError {
        switch e {
        case .resolve:
            CLIError("cannot resolve \(host)")
        case .connect(_, _, let errno):
            CLIError("cannot connect to the daemon at \(scheme)://\(host):\(port): \(String(cString: strerror(errno))) (is `cloudbios daemon` running?)")
        case .tls(let why):
            CLIError("\(host):\(port): \(why) (pass --cacert STATE/tls/cert.pem, or --insecure)")
        case .connectionLost(sending: true, _):
            CLIError("\(host):\(port): connection lost while sending")
        case .badStatusLine:
            CLIError("malformed HTTP status line")
        default:
            CLIError("\(host):\(port): \(e)")
        }
    }
}
