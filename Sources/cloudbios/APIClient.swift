import Config
import Platform
import Panel
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

    func request(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json") throws -> Response {
        var target = url
        target.target = path
        var headers = [HTTPField("Accept", "application/json")]
        if let token { headers.append(HTTPField("Authorization", "Bearer \(token)")) }
        if body != nil { headers.append(HTTPField("Content-Type", contentType)) }
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

    /// Opens a WebSocket (subprotocol `binary`) on `path`: the stream and
    /// the bytes that came with the answer's head; the API's error when the
    /// daemon refuses (a VM that is not running, say).
    func openWebSocket(_ path: String) throws -> (NetStream, [UInt8]) {
        var target = url
        target.target = path
        let key = WebSocket.base64((0..<16).map { _ in UInt8.random(in: 0...255) })
        var headers = [HTTPField("Upgrade", "websocket"), HTTPField("Connection", "Upgrade"),
                       HTTPField("Sec-WebSocket-Key", key), HTTPField("Sec-WebSocket-Version", "13"),
                       HTTPField("Sec-WebSocket-Protocol", "binary")]
        if let token { headers.append(HTTPField("Authorization", "Bearer \(token)")) }
        let trust: TLSTrust = insecure ? .none : caFile.map { .pinned($0) } ?? .system
        // no timeout worth the name: a console may be quiet for hours
        let client = HTTPClient(trust: trust, timeout: 3600, userAgent: "cloudbios-cli")
        let x: HTTPExchange
        do throws(NetError) {
            x = try client.open(HTTPRequest("GET", target, headers: headers))
        } catch {
            throw cliError(error)
        }
        guard x.head.status == 101 else {
            let body = (try? x.readBody(limit: 1 << 16)) ?? []
            let r = Response(status: x.head.status, headers: [:], body: body)
            throw CLIError(r.status == 401 ? "not authenticated: run 'cloudbios login'" : r.errorMessage)
        }
        guard x.head.header("Sec-WebSocket-Accept") == WebSocket.acceptKey(key) else {
            throw CLIError("\(host):\(port): the daemon's WebSocket answer does not match the key sent")
        }
        return x.switchedProtocols()
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
