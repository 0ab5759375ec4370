import Config
import Platform
import Synchronization

/// Node to node: each node serves its API on `apiPort` of its fleet
/// address over TLS with its fleet certificate (the others check it
/// against the fleet's CA), and a request one node sends another carries
/// `X-CloudBIOS-Fleet: NODE USER TIME MAC`, the MAC an HMAC of
/// node, user, time, method and target under a key derived from the
/// cluster token: only a node of the fleet can make one, so the caller's
/// user travels with the request and no header from outside is believed.
extension Fleet {
    /// The port each node serves its API to the others on.
    public static let apiPort = 2382
    /// How far a credential's time may be from this node's clock.
    public static let credentialSkew = 60.0

    var nodeAPIKey: [UInt8] { FleetPKI.secret(token: cluster.token, fleet: cluster.name, purpose: "node api") }

    static func credentialMessage(node: String, user: String, time: Int, method: String, target: String) -> [UInt8] {
        Array("\(node)\n\(user)\n\(time)\n\(method)\n\(target)".utf8)
    }

    /// The credential for `user`'s request `method target`, sent now.
    public func credential(user: String, method: String, target: String, now: Double = Clock.wall()) -> String {
        let t = Int(now)
        let mac = hmacSHA256(key: nodeAPIKey, message: Self.credentialMessage(node: node, user: user, time: t, method: method, target: target))
        return "\(node) \(user) \(t) \(Self.hex(mac))"
    }

    /// The user a credential speaks for; nil when its MAC, names or time
    /// are wrong.
    public func verify(_ credential: String, method: String, target: String, now: Double = Clock.wall()) -> String? {
        let f = credential.split(separator: " ").map(String.init)
        guard f.count == 4, Names.checkNode(f[0]) == nil, !f[1].isEmpty, f[1].utf8.count <= 64, let t = Int(f[2]),
              abs(Double(t) - now) <= Self.credentialSkew else { return nil }
        let mac = Self.hex(hmacSHA256(key: nodeAPIKey, message: Self.credentialMessage(node: f[0], user: f[1], time: t, method: method, target: target)))
        var diff: UInt8 = f[3].utf8.count == mac.utf8.count ? 0 : 1
        for (a, b) in zip(f[3].utf8, mac.utf8) { diff |= a ^ b }
        return diff == 0 ? f[1] : nil
    }

    static func hex(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// This node's certificate and key (PEM) for its node API listener.
    public func apiCertificate() throws(FleetError) -> (cert: String, key: String) {
        let pki = member.settings.pki
        do { return (try Files.readString(pki.nodeCert), try Files.readString(pki.nodeKey)) } catch {
            throw .certificate("\(pki.directory): \(error)")
        }
    }

    /// One answer of another node.
    public struct NodeAnswer: Sendable {
        public var status: Int
        public var contentType: String?
        public var headers: [(String, String)]
        public var body: [UInt8]
    }

    /// Sends `user`'s request to node `name` (at `address`) over TLS,
    /// checking its certificate against the fleet's CA.
    public func send(to name: String, address: String, method: String, target: String, contentType: String?, body: [UInt8],
                     user: String, timeout: Double = 30) throws(FleetError) -> NodeAnswer {
        var url = HTTPURL(tls: true, host: address, port: Self.apiPort)
        url.target = target
        var headers = [HTTPField("X-CloudBIOS-Fleet", credential(user: user, method: method, target: target))]
        if let contentType { headers.append(HTTPField("Content-Type", contentType)) }
        let r: HTTPResponse
        do {
            let request = HTTPRequest(method, url, headers: headers, body: body)
            if timeout == nodePool.client.timeout {
                // the usual case: a connection kept open from an earlier request, no new handshake
                r = try nodePool.fetch(request, deadline: .after(timeout), maxBody: 64 << 20)
            } else {
                let client = HTTPClient(trust: .authorities(member.settings.pki.caCert), timeout: timeout, userAgent: "cloudbios-fleet")
                r = try client.fetch(request, deadline: .after(timeout), maxBody: 64 << 20)
            }
        } catch {
            throw .unreachable("node '\(name)' at \(address): \(error)")
        }
        let keep = ["x-log-offset", "cache-control", "location"]
        let extra = r.head.headers.filter { keep.contains($0.name.lowercased()) }.map { ($0.name, $0.value) }
        return NodeAnswer(status: r.status, contentType: r.header("content-type"), headers: extra, body: r.body)
    }

    public func sendAsync(to name: String, address: String, method: String, target: String, contentType: String?, body: [UInt8],
                          user: String) async throws(FleetError) -> NodeAnswer {
        try await offThread { [self] () throws(FleetError) in
            try send(to: name, address: address, method: method, target: target, contentType: contentType, body: body, user: user)
        }
    }

    /// `nodes()` as read at most `maxAge` seconds ago (the node API asks
    /// it for each request it forwards; a node going down shows within
    /// its lease's TTL anyway).
    public func recentNodes(maxAge: Double = 1) async throws(FleetError) -> [NodeInfo] {
        let now = Clock.monotonic()
        if let c = nodeCache.withLock({ $0 }), now - c.at < maxAge { return c.nodes }
        let n = try await nodesAsync()
        nodeCache.withLock { $0 = (now, n) }
        return n
    }

    /// Every VM owned in the fleet, by name: its owner node.
    public func owners() throws(FleetError) -> [String: String] {
        var out: [String: String] = [:]
        for kv in try etcd.list(prefix: prefix + "vms/") { out[String(kv.key.dropFirst(prefix.count + 4))] = kv.string }
        return out
    }

    public func ownersAsync() async throws(FleetError) -> [String: String] {
        try await offThread { [self] () throws(FleetError) in try owners() }
    }

    public func ownerAsync(_ vm: String) async throws(FleetError) -> String? {
        try await offThread { [self] () throws(FleetError) in try owner(vm) }
    }
}

/// Where a new VM goes when the request names no node: the up node with
/// the most free memory (ties: the first name), nil when none is up.
public func placement(_ nodes: [NodeInfo]) -> String? {
    nodes.filter { $0.state == "up" }.sorted { ($0.memoryFree, $1.name) > ($1.memoryFree, $0.name) }.first?.name
}
