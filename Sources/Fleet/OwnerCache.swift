import Config
import Platform

/// What this node remembers of the VMs' owners, so that a request for a VM
/// costs no etcd read: an entry is learnt from each claim, handover,
/// release and read of a VM's key this node makes. Its own VMs' entries
/// stay right, since only the owner gives a VM up (`release`, `handOver`,
/// both of which forget it first). An entry naming another node may be
/// stale once that node handed the VM on: that node then answers a
/// forwarded request with `notOwner`, and the forwarding node reads etcd
/// again (`owner`) and retries once.
extension Fleet {
    /// The owner this node last learnt; nil when it knows none (no etcd read).
    public func knownOwner(_ vm: String) -> String? {
        ownerCache.withLock { $0[vm] }
    }

    /// The owner as remembered, else as etcd says now.
    public func cachedOwnerAsync(_ vm: String) async throws(FleetError) -> String? {
        if let o = knownOwner(vm) { return o }
        return try await ownerAsync(vm)
    }

    /// Remembers the VM's owner (nil: none known; a VM nobody owns is never
    /// remembered, another node may claim it any time).
    func learn(_ vm: String, owner: String?) {
        ownerCache.withLock { cache in
            if let owner, Names.checkNode(owner) == nil {
                cache[vm] = owner
            } else {
                cache[vm] = nil
            }
        }
    }
}
