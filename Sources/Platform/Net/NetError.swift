#if canImport(Glibc)
import Glibc
#endif

/// Why a connection or an HTTP exchange failed, in words a person can act
/// on. Text that came from the server is clipped and made printable. Callers
/// put their own context in front (the URL, the daemon) and map these to
/// their own errors; nothing here knows about the panel's HTTP statuses.
public enum NetError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL cannot be used.
    case badURL(HTTPURL.Problem)
    /// The host name has no address.
    case resolve(String)
    /// No address of the host accepted a connection (the last errno).
    case connect(host: String, port: Int, errno: Int32)
    /// TLS could not be set up: GnuTLS's words ("TLS handshake failed: …"),
    /// or why its libraries cannot be loaded.
    case tls(String)
    /// Nothing was sent or received for this many seconds.
    case timedOut(Double)
    /// The exchange's deadline passed.
    case deadline
    /// The connection broke (errno; 0 for a TLS failure).
    case connectionLost(sending: Bool, errno: Int32)
    /// The peer closed the connection before any answer.
    case noAnswer
    /// The answer does not start with an HTTP/1.x status line (the line).
    case badStatusLine(String)
    /// The answer's head is too long, cut short or has a broken line.
    case malformedHead
    case badContentLength(String)
    /// A request header that would break the request (a line break in it).
    case badRequestHeader(String)
    case chunked(ChunkedDecoder.Failure)
    /// The body ended before the length its Content-Length announced.
    case truncated(announced: Int64)
    /// The body would be larger than `limit` bytes (a `chunk` size said so).
    case tooLarge(limit: Int64, chunk: Int64?)
    /// More redirects than the client follows.
    case tooManyRedirects(Int)
    /// An https URL redirected to this http one.
    case redirectToHTTP(String)
    /// A Location the client cannot follow.
    case badRedirect(String)
    /// A redirect status without a Location.
    case redirectWithoutLocation(Int)
    /// The file a request body streams from cannot be read (what failed).
    case bodyFile(String)

    public var description: String {
        switch self {
        case .badURL(.scheme): "only http:// and https:// URLs are supported"
        case .badURL(.host): "the URL has no valid host"
        case .badURL(.path): "the URL has an invalid path"
        case .resolve(let host): "cannot resolve \(host)"
        case .connect(let host, let port, let e):
            "cannot connect to \(host.contains(":") ? "[\(host)]" : host):\(port): \(String(cString: strerror(e)))"
        case .tls(let why): why
        case .timedOut(let s): "the server sent nothing for \(s >= 1 ? "\(Int(s))" : "\(s)") s"
        case .deadline: "not done within the deadline"
        case .connectionLost(let sending, let e):
            "connection lost while \(sending ? "sending" : "receiving")" + (e == 0 ? " (TLS)" : ": \(String(cString: strerror(e)))")
        case .noAnswer: "the server closed the connection without an answer"
        case .badStatusLine(let line): "not an HTTP answer: '\(clipped(line))'"
        case .malformedHead: "malformed HTTP response"
        case .badContentLength(let v): "bad Content-Length '\(clipped(v))'"
        case .badRequestHeader(let name): "the request header \(clipped(name)) has a line break"
        case .chunked(let f): f.description
        case .truncated(let n): "truncated: \(n) bytes announced"
        case .tooLarge(let limit, nil): "larger than \(limit) bytes"
        case .tooLarge(let limit, let chunk?): "a chunk of \(chunk) bytes makes it larger than \(limit) bytes"
        case .tooManyRedirects(let n): "more than \(n) redirects"
        case .redirectToHTTP(let to): "redirected from https to http (\(clipped(to))); refused"
        case .badRedirect(let to): "redirect to '\(clipped(to))', which is not an http(s) URL or a path"
        case .redirectWithoutLocation(let status): "HTTP \(status) without a Location"
        case .bodyFile(let why): "cannot send the request body: \(why)"
        }
    }
}

/// Text from the network as it may appear in a message: control
/// characters as `?`, at most 40 characters.
func clipped(_ s: String) -> String {
    let printable = String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
    return printable.count > 40 ? String(printable.prefix(40)) + "…" : printable
}
