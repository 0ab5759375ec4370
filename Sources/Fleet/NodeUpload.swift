import Config
import Platform

/// Files one node streams to another over the node API: a migration's
/// images the destination lacks, sent as `PUT /api/v1/images/{name}` with
/// the node credential, straight from the store's file (never whole in
/// memory).
extension Fleet {
    /// Streams the `size` bytes of the file at `path` to node `name` (at
    /// `address`) as `PUT target`; its answer. Bounded by `timeout` without
    /// progress and `deadline` seconds in all.
    public func sendFile(to name: String, address: String, target: String, path: String, size: Int64, user: String,
                         timeout: Double = 60, deadline: Double = 3600) throws(FleetError) -> NodeAnswer {
        var url = HTTPURL(tls: true, host: address, port: Self.apiPort)
        url.target = target
        let headers = [HTTPField("X-CloudBIOS-Fleet", credential(user: user, method: "PUT", target: target)),
                       HTTPField("Content-Type", "application/octet-stream")]
        var request = HTTPRequest("PUT", url, headers: headers)
        request.bodyFile = (path, size)
        let client = HTTPClient(trust: .authorities(member.settings.pki.caCert), timeout: timeout, userAgent: "cloudbios-fleet")
        let r: HTTPResponse
        do { r = try client.fetch(request, deadline: .after(deadline), maxBody: 1 << 20) } catch {
            throw .unreachable("node '\(name)' at \(address): \(error)")
        }
        return NodeAnswer(status: r.status, contentType: r.header("content-type"), headers: [], body: r.body)
    }

    public func sendFileAsync(to name: String, address: String, target: String, path: String, size: Int64,
                              user: String) async throws(FleetError) -> NodeAnswer {
        try await offThread { [self] () throws(FleetError) in
            try sendFile(to: name, address: address, target: target, path: path, size: size, user: user)
        }
    }
}

/// A request another node answered by switching protocols (a console's
/// WebSocket), or did not.
public enum NodeStream: @unchecked Sendable {
    /// `101`: the connection, its answer's headers and the bytes that came
    /// with them.
    case switched(stream: NetStream, headers: [(String, String)], early: [UInt8])
    /// Any other answer, whole.
    case answered(Fleet.NodeAnswer)
}

extension Fleet {
    /// Sends `user`'s `GET target` with `headers` (an `Upgrade` request) to
    /// node `name` over TLS; its connection once it switched protocols. The
    /// stream waits up to an hour for the next bytes (a console is quiet).
    public func openStream(to name: String, address: String, target: String, headers extra: [(String, String)],
                           user: String) throws(FleetError) -> NodeStream {
        var url = HTTPURL(tls: true, host: address, port: Self.apiPort)
        url.target = target
        var headers = [HTTPField("X-CloudBIOS-Fleet", credential(user: user, method: "GET", target: target))]
        headers += extra.map { HTTPField($0.0, $0.1) }
        let client = HTTPClient(trust: .authorities(member.settings.pki.caCert), timeout: 3600, userAgent: "cloudbios-fleet")
        do {
            let x = try client.open(HTTPRequest("GET", url, headers: headers), deadline: .never)
            let h = x.head.headers.map { ($0.name, $0.value) }
            guard x.head.status == 101 else {
                let body = (try? x.readBody(limit: 1 << 16)) ?? []
                return .answered(NodeAnswer(status: x.head.status, contentType: x.head.header("content-type"), headers: [], body: body))
            }
            let (stream, early) = x.switchedProtocols()
            return .switched(stream: stream, headers: h, early: early)
        } catch {
            throw .unreachable("node '\(name)' at \(address): \(error)")
        }
    }

    public func openStreamAsync(to name: String, address: String, target: String, headers: [(String, String)],
                                user: String) async throws(FleetError) -> NodeStream {
        try await offThread { [self] () throws(FleetError) in
            try openStream(to: name, address: address, target: target, headers: headers, user: user)
        }
    }
}
