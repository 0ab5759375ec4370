#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// A node leaving the fleet for good (`cloudbios cluster leave`): the
/// names of the VMs it holds are given back (the caller has checked none
/// runs), its record and liveness go, its etcd member is removed (the
/// quorum then counts only the others), its etcd stops and its data goes.
/// The others show it gone at once; this node runs on alone. Leaving
/// again finishes a leave cut short: a node whose etcd member is gone
/// already (the removal applied, its answer lost) stops its etcd and
/// deletes its data.
extension Fleet {
    /// Whether this node has left the fleet.
    public var hasLeft: Bool { renewing.withLock { left } }

    public func leave() throws(FleetError) {
        let peer = member.settings.peerURL(address)
        let members: [EtcdClient.Member]
        do throws(FleetError) { members = try etcd.members() } catch {
            // an etcd that no longer serves because its member is gone: a leave whose last answer was lost
            guard memberGone(peer) else { throw error }
            return finishLeaving("its etcd member was removed already")
        }
        guard let me = members.first(where: { $0.peerURLs.contains(peer) }) else {
            guard memberGone(peer) else { throw .conflict("node '\(node)' is no etcd member of fleet '\(cluster.name)'") }
            return finishLeaving("its etcd member was removed already")
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
            do throws(FleetError) { try removeMember(me.id) } catch {
                // the removal may have been applied with its answer lost (this member's etcd stops once removed)
                guard memberGone(peer, patience: 5) else { throw error }
            }
        } catch {
            renewing.withLock { left = false }
            throw error
        }
        finishLeaving("etcd member \(me.name) removed")
    }

    /// What is left to do here once this node's etcd member is gone: no more
    /// heartbeats, etcd stopped, its data (which can never serve again) deleted.
    func finishLeaving(_ how: String) {
        renewing.withLock { left = true }
        Log.info("fleet \(cluster.name): node \(node) left (\(how))")
        stop()
        Files.removeTree(member.settings.dataDir)
    }

    /// Whether this node's etcd member is no longer one of the fleet's: its
    /// etcd lists the members without it, or stopped saying it was removed
    /// (etcd's log). Asked again for up to `patience` seconds.
    func memberGone(_ peer: String, patience: Double = 0) -> Bool {
        let deadline = Clock.monotonic() + patience
        while true {
            if let m = try? etcd.members() {
                if !m.contains(where: { $0.peerURLs.contains(peer) }) { return true }
            } else if etcdLogSaysRemoved() {
                return true
            }
            if Clock.monotonic() >= deadline { return false }
            usleep(500_000)
        }
    }

    /// etcd's log ends saying this member was removed from the cluster.
    func etcdLogSaysRemoved() -> Bool {
        guard let text = try? Files.readString(member.settings.logFile) else { return false }
        // the last 64 KiB: what etcd said since it last started
        let tail = text.utf8.count > 65536 ? String(decoding: text.utf8.suffix(65536), as: UTF8.self) : text
        return tail.contains("permanently removed from the cluster") || tail.contains("member has already been removed")
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
