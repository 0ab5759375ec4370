import Config
import Platform

/// A node joining a running fleet: one whose `address` is not among the
/// `members` and that has no etcd data yet asks a member, over the node
/// API with the token's credential, to add it to etcd (`POST
/// /api/v1/nodes`), then starts its own member with the cluster as it is.
extension Fleet {
    /// True when this node must join through the `members` (it is not one
    /// of them and its member never ran).
    public var mustJoin: Bool {
        !cluster.members.contains(address) && !Files.exists(member.settings.dataDir + "/member")
    }

    /// On a member: adds the node at `address` to etcd (once; asking again
    /// is harmless) and returns the initial cluster it starts with.
    public func admit(name: String, address: String) throws(FleetError) -> [String] {
        let peer = member.settings.peerURL(address)
        var members = try etcd.members()
        if !members.contains(where: { $0.peerURLs.contains(peer) }) {
            members = try etcd.addMember(peerURLs: [peer]).members
            Log.info("fleet \(cluster.name): node \(name) at \(address) joins (etcd member added)")
        }
        return members.compactMap { m in
            guard let url = m.peerURLs.first else { return nil }
            // a member's name is its address; one that never started has none yet
            let host = m.name.isEmpty ? String(url.dropFirst("https://".count).prefix { $0 != ":" }) : m.name
            return "\(host)=\(url)"
        }
    }

    public func admitAsync(name: String, address: String) async throws(FleetError) -> [String] {
        try await offThread { [self] () throws(FleetError) in try admit(name: name, address: address) }
    }

    /// Asks the members, one after the other, to add this node; makes the
    /// member start as a new member of their cluster.
    func join() throws(FleetError) {
        var last = FleetError.unreachable("no member of the fleet to join through")
        let body = JSONValue.object(["name": .string(node), "address": .string(address)]).bytes
        for m in cluster.members {
            do throws(FleetError) {
                let a = try send(to: m, address: m, method: "POST", target: "/api/v1/nodes", contentType: "application/json", body: body,
                                 user: node, timeout: 15)
                guard a.status == 200, let v = try? JSONValue.parse(a.body), let list = v["initial_cluster"]?.arrayValue else {
                    throw FleetError.conflict("joining through \(m): HTTP \(a.status): \(String(decoding: a.body.prefix(300), as: UTF8.self))")
                }
                member.joining(initialCluster: list.compactMap(\.stringValue))
                Log.info("fleet \(cluster.name): joined through \(m)")
                return
            } catch { last = error }
        }
        throw last
    }
}
