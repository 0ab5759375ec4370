import Config
import Fleet
import Platform
import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's part in a fleet (`cluster:` in cloudbios.yaml): this node's
/// etcd member and heartbeat, started beside the panel.
enum DaemonFleet {
    /// Makes the fleet's certificates, starts etcd and the heartbeat; nil
    /// without a `cluster:` section. `joiningNow`: a join through the API.
    static func start(_ cfg: CloudBIOSConfig, stateDir: String, manager: VMManager, joiningNow: Bool = false) async throws -> Fleet? {
        guard let cluster = cfg.cluster else { return nil }
        // (the hostname straight from the kernel: the panel need not wait for the KVM probe)
        let node = cluster.node ?? cfg.hostname ?? Self.hostname()
        if let e = Names.checkNode(node) {
            throw CLIError("cluster.node is not set and the hostname cannot name a node (\(e)): set cluster.node")
        }
        guard let address = cluster.address ?? Fleet.defaultAddress() else {
            throw CLIError("cluster.address is not set and this host has no IPv4 address yet: set cluster.address")
        }
        let fleet: Fleet
        do {
            fleet = try Fleet(cluster: cluster, node: node, address: address, directory: stateDir + "/fleet") {
                let h = await manager.host(hostname: cfg.hostname)
                return NodeCapacity(cpus: h.cpus, memory: h.memoryTotalMiB, memoryFree: h.memoryAvailableMiB,
                                    vms: await manager.list().count)
            }
            if joiningNow {
                // (from a request: the join through a member and etcd's start block, off the cooperative threads)
                let r: Result<Void, FleetError> = await withCheckedContinuation { k in
                    spawnThread { k.resume(returning: Result { () throws(FleetError) in try fleet.start() }) }
                }
                try r.get()
            } else {
                try fleet.start()
            }
        } catch { throw CLIError("fleet \(cluster.name): \(error)") }
        // every start (the API's, autostart, the config file's VMs) claims the VM first:
        // a VM another node owns is not started here
        await manager.setStartGate { name in
            // a node that left the fleet runs its VMs on its own
            if fleet.hasLeft { return }
            let deadline = Clock.monotonic() + 60
            while true {
                do throws(FleetError) {
                    _ = try await fleet.claimAsync(name)
                    return
                } catch {
                    // no quorum yet (the fleet still forming): wait a little; another owner: refused now
                    if case .conflict = error { throw error }
                    if Clock.monotonic() > deadline { throw error }
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                }
            }
        }
        Log.info("fleet \(cluster.name): node \(node) at \(address), etcd member of \(cluster.members.joined(separator: ", "))")
        return fleet
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "" }
        return String(nulTerminated: buf)
    }
}
