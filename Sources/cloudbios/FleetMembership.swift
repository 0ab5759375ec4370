import Config
import Fleet
import Panel
import Platform
import Synchronization
import VMManager

/// This node's membership of a fleet as the running daemon holds it: the
/// fleet (nil on its own), and what joining or leaving one through the API
/// changes beside it: the config file's `cluster:` section, the node API
/// listener.
final class FleetMembership: Sendable {
    let fleet = Mutex<Fleet?>(nil)
    /// The daemon's config file (nil: started without one).
    let configFile: String?
    /// The config as the daemon read it.
    let config: CloudBIOSConfig
    let stateDir: String
    /// One join or leave at a time.
    private let changing = Mutex(false)

    init(configFile: String?, config: CloudBIOSConfig, stateDir: String) {
        self.configFile = configFile; self.config = config; self.stateDir = stateDir
    }

    /// Joins the fleet now: the `cluster:` section is checked and written
    /// to the config file (so the next start is in the fleet too), the node
    /// joins through `member` (its etcd member added there, then started
    /// here), and its node API serves. Refused while any VM runs (they
    /// would belong to no node of the fleet); on failure the config file is
    /// as it was and nothing runs.
    func join(_ r: FleetJoinRequest, manager: VMManager) async throws -> Fleet {
        try begin()
        defer { changing.withLock { $0 = false } }
        if let f = fleet.withLock({ $0 }), !f.hasLeft {
            throw RequestError.conflict("this node is in fleet '\(f.cluster.name)' already")
        }
        guard let path = configFile else {
            throw RequestError.conflict("this daemon runs without a config file to keep the fleet in (cloudbios daemon --config FILE)")
        }
        let busy = await manager.activeVMNames()
        guard busy.isEmpty else {
            throw RequestError.conflict("VMs run here (\(busy.map { "'\($0)'" }.joined(separator: ", "))): stop them before this node joins a fleet")
        }
        let before: String
        do { before = Files.exists(path) ? try Files.readString(path) : "version: 1\n" } catch {
            throw RequestError.conflict("\(path): \(error)")
        }
        if ClusterConfig.hasSection(before) {
            throw RequestError.conflict("\(path) has a cluster: section already: this node starts in that fleet at the daemon's next start")
        }
        let text = ClusterConfig.adding(ClusterConfig.joiningSection(fleet: r.fleet, member: r.member, token: r.token,
                                                                     node: r.node, address: r.address), to: before)
        // the file as the next start reads it (its other sections as they are now on disk)
        let next: CloudBIOSConfig
        do { next = try ConfigLoader.load(path: path, text: text) } catch { throw RequestError.badRequest(error.description) }
        guard var cluster = next.cluster else { throw RequestError.badRequest("the cluster: section did not read back") }
        var cfg = config
        cluster.node = cluster.node ?? config.cluster?.node
        cfg.cluster = cluster
        let fleetDir = stateDir + "/fleet"
        let hadFleetDir = Files.exists(fleetDir)
        do { try Files.writeAtomically(path, text, mode: 0o600) } catch { throw RequestError.conflict("\(path): \(error)") }
        do {
            guard let f = try await DaemonFleet.start(cfg, stateDir: stateDir, manager: manager, joiningNow: true) else {
                throw CLIError("no cluster: section")
            }
            do {
                let c = try f.apiCertificate()
                try startFleetListener(address: f.address, certPEM: c.cert, keyPEM: c.key)
            } catch {
                f.stop()
                throw CLIError("node API on \(f.address):\(Fleet.apiPort): \(error)")
            }
            fleet.withLock { $0 = f }
            Log.info("fleet \(cluster.name): joined through \(r.member) from the API")
            return f
        } catch {
            try? Files.writeAtomically(path, before, mode: 0o600)
            // a machine that never joined keeps no fleet directory (the next try makes its certificates anew)
            if !hadFleetDir { Files.removeTree(fleetDir) }
            throw RequestError(.invalid, "joining fleet '\(r.fleet)' through \(r.member): \(error)")
        }
    }

    /// After this node left its fleet: the config file's `cluster:`
    /// section goes, so the next start is on its own (a file that cannot be
    /// written is said in the log; `cloudbios cluster leave` finishes it).
    func forgetCluster() {
        guard let path = configFile, let text = try? Files.readString(path), ClusterConfig.hasSection(text) else { return }
        do {
            try Files.writeAtomically(path, ClusterConfig.removingSection(from: text), mode: 0o600)
            Log.info("fleet: \(path): cluster: section removed; the next start is on its own")
        } catch {
            Log.warning("fleet: left, but \(path) keeps its cluster: section (\(error)): remove it before the daemon starts again")
        }
    }

    private func begin() throws {
        let busy = changing.withLock { b in
            if b { return true }
            b = true
            return false
        }
        if busy { throw RequestError.conflict("a join or leave is under way") }
    }

    /// The same guard for a leave.
    func leaving<T>(_ body: () async throws -> T) async throws -> T {
        try begin()
        defer { changing.withLock { $0 = false } }
        return try await body()
    }
}
