#if canImport(Glibc)
import Glibc
#endif

/// An `HTTPClient` that keeps its connections open between requests to the
/// same server (HTTP/1.1 keep-alive), so that a request after the first
/// costs no TCP or TLS handshake. An idle connection serves again only
/// while young and quiet (a server that closed it makes it readable); one
/// that fails before any answer came is retried once on a new connection.
public final class HTTPPool: @unchecked Sendable {
    public let client: HTTPClient
    /// Seconds an idle connection is kept.
    public let idleSeconds: Double
    /// Idle connections kept per server.
    public let perServer: Int
    private let lock = ConditionLock()
    private var idle: [String: [(connection: Connection, since: Double)]] = [:]

    public init(client: HTTPClient, idleSeconds: Double = 10, perServer: Int = 4) {
        self.client = client; self.idleSeconds = idleSeconds; self.perServer = perServer
    }

    static func key(_ url: HTTPURL) -> String { "\(url.tls ? "https" : "http")://\(url.host):\(url.port)" }

    /// The whole answer, its body at most `maxBody` bytes (no redirects).
    public func fetch(_ request: HTTPRequest, deadline: Deadline = .never, maxBody: Int = 16 << 20) throws(NetError) -> HTTPResponse {
        let key = Self.key(request.url)
        if let c = take(key) {
            do {
                return try exchange(request, key: key, deadline: deadline, maxBody: maxBody, reusing: c)
            } catch {
                // an idle connection the server had closed: nothing of the request was answered
                switch error {
                case .noAnswer, .connectionLost(sending: true, _): break
                default: throw error
                }
            }
        }
        return try exchange(request, key: key, deadline: deadline, maxBody: maxBody, reusing: nil)
    }

    private func exchange(_ request: HTTPRequest, key: String, deadline: Deadline, maxBody: Int,
                          reusing: Connection?) throws(NetError) -> HTTPResponse {
        let x = try HTTPExchange(request, client: client, deadline: deadline, reusing: reusing, keepAlive: true)
        let body = try x.readBody(limit: maxBody)
        if let c = x.reusableConnection { put(key, c) }
        return HTTPResponse(url: x.url, head: x.head, body: body)
    }

    private func take(_ key: String) -> Connection? {
        let now = Clock.monotonic()
        while true {
            let entry: (connection: Connection, since: Double)? = lock.withLock { idle[key]?.popLast() }
            guard let entry else { return nil }
            guard now - entry.since < idleSeconds else { continue }
            // a quiet connection has nothing to read: readable means closed (or garbage)
            var p = pollfd(fd: entry.connection.fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) != 0 { continue }
            return entry.connection
        }
    }

    private func put(_ key: String, _ c: Connection) {
        let now = Clock.monotonic()
        lock.withLock {
            var list = (idle[key] ?? []).filter { now - $0.since < idleSeconds }
            if list.count < perServer { list.append((c, now)) }
            idle[key] = list
        }
    }
}
