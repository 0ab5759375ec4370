#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// A node leaving the fleet for good (`cloudbios cluster leave`): the
/// names of the VMs it holds are given back (the caller has checked none
/// runs), its record and liveness go, its etcd member is removed (the
/// quorum then counts only the others), its etcd stops and its data goes.
/// The others show it gone at once; this node runs on alone.
extension Fleet {
    /// Whether this node has left the fleet.
    public var hasLeft: Bool { renewing.withLock { left } }

    public func leave() throws(FleetError) {
        let members = try etcd.members()
        let peer = member.settings.peerURL(address)
        guard let me = members.first(where: { $0.peerURLs.contains(peer) }) else {
            throw .conflict("node '\(node)' is no etcd member of fleet '\(cluster.name)'")
        }
        guard members.count > 1 else { throw .conflict("node '\(node)' is the only member of fleet '\(cluster.name)': there is no fleet to leave") }
        // no heartbeat writes from here on
        renewing.withLock { left = true }
        do throws(FleetError) {
            for (vm, owner) in try owners() where owner == node { try release(vm) }
            _ = try etcd.delete(nodeKey(node))
            let id = lock.withLock { let id = lease; lease = 0; return id }
            if id != 0 { try? etcd.revoke(id) }
            _ = try etcd.delete(aliveKey(node))
            try removeMember(me.id)
        } catch {
            renewing.withLock { left = false }
            throw error
        }
        Log.info("fleet \(cluster.name): node \(node) left (etcd member \(me.name) removed)")
        stop()
        // a removed member's data can never serve again
        Files.removeTree(member.settings.dataDir)
    }

    /// Removes an etcd member, waiting (up to `patience` seconds) while etcd
    /// refuses because a member's connection is too recent to count on for
    /// the quorum that stays ("unhealthy cluster").
    func removeMember(_ id: UInt64, patience: Double = 30) throws(FleetError) {
        let deadline = Clock.monotonic() + patience
        while true {
            do throws(FleetError) {
                try etcd.removeMember(id)
                return
            } catch {
                guard case .etcd(_, let why) = error, why.contains("unhealthy cluster") || why.contains("not enough started members"),
                      Clock.monotonic() < deadline else { throw error }
                usleep(500_000)
            }
        }
    }

    public func leaveAsync() async throws(FleetError) {
        try await offThread { [self] () throws(FleetError) in try leave() }
    }
}
