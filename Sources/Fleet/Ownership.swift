import Config

/// Which node owns each VM: `/cloudbios/FLEET/vms/NAME` holds the owner's
/// node name, written only in etcd transactions (create when absent,
/// delete when it is still ours), so of two nodes claiming one name at the
/// same moment exactly one wins, and a VM is defined and started on one
/// node of the fleet only.
extension Fleet {
    func vmKey(_ name: String) -> String { prefix + "vms/" + name }

    /// Makes this node the VM's owner unless another node is; true when
    /// the claim is new (false: this node owned it already).
    public func claim(_ vm: String) throws(FleetError) -> Bool {
        let r = try etcd.txn([.absent(vmKey(vm))], success: [.put(vmKey(vm), Array(node.utf8), lease: 0)], failure: [.get(vmKey(vm))])
        if r.succeeded {
            learn(vm, owner: node)
            return true
        }
        let owner = r.read.first?.string ?? "?"
        learn(vm, owner: r.read.first?.string)
        guard owner == node else {
            throw .conflict("VM '\(Names.clip(vm))' belongs to node '\(Names.clip(owner))' of the fleet")
        }
        return false
    }

    /// Gives up this node's ownership of the VM (never another node's).
    public func release(_ vm: String) throws(FleetError) {
        learn(vm, owner: nil)
        _ = try etcd.txn([.value(vmKey(vm), Array(node.utf8))], success: [.delete(vmKey(vm))])
    }

    /// The VM's owner, nil when no node owns it.
    public func owner(_ vm: String) throws(FleetError) -> String? {
        let owner = try etcd.get(vmKey(vm))?.string
        learn(vm, owner: owner)
        return owner
    }

    /// Makes `node` the owner of a VM this node owns, in one transaction
    /// (refused when this node no longer owns it).
    public func handOver(_ vm: String, to node: String) throws(FleetError) {
        // whatever the answer, this node no longer knows it owns the VM
        learn(vm, owner: nil)
        let r = try etcd.txn([.value(vmKey(vm), Array(self.node.utf8))], success: [.put(vmKey(vm), Array(node.utf8), lease: 0)])
        guard r.succeeded else { throw .conflict("VM '\(Names.clip(vm))' is no longer node '\(self.node)''s") }
        learn(vm, owner: node)
    }

    public func handOverAsync(_ vm: String, to node: String) async throws(FleetError) {
        try await offThread { [self] () throws(FleetError) in try handOver(vm, to: node) }
    }

    public func claimAsync(_ vm: String) async throws(FleetError) -> Bool {
        try await offThread { [self] () throws(FleetError) in try claim(vm) }
    }

    public func releaseAsync(_ vm: String) async throws(FleetError) {
        try await offThread { [self] () throws(FleetError) in try release(vm) }
    }
}
