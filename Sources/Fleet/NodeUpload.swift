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
