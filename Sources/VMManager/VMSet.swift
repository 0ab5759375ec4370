import Config

/// What is defined, as those who follow the VMs rather than run them see
/// it: every VM's name (sorted) and the one shown on the local display.
/// GRUB's per-VM entries are made from it.
public struct VMSet: Sendable, Equatable {
    public var names: [String]
    public var display: String?

    public init(names: [String], display: String?) {
        self.names = names
        self.display = display
    }

    init(_ specs: [String: VMSpec]) {
        names = specs.keys.sorted()
        display = specs.values.filter(\.display).map(\.name).min()
    }
}

/// The VM set, followed: whoever keeps something in step with the VMs
/// registers once and is told of every change, whatever made it (the API,
/// the config file, an import, a restore or a clone, a live migration in or
/// out, a fleet), so no path that defines or removes a VM can forget them.
extension VMManager {
    /// Calls `follower` with the VM set now and then after each change of
    /// it, in order, on the manager's actor: it must return at once (hand
    /// slow work to its own thread).
    public func followVMSet(_ follower: @escaping @Sendable (VMSet) -> Void) {
        vmSetFollowers.append(follower)
        follower(VMSet(specs))
    }

    /// Called whenever `specs` changed: followers hear of it when the set
    /// they see differs.
    func specsChanged(from old: [String: VMSpec]) {
        guard !vmSetFollowers.isEmpty else { return }
        let now = VMSet(specs)
        guard now != VMSet(old) else { return }
        for f in vmSetFollowers { f(now) }
    }
}
