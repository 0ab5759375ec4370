import Config
import Disks
import Install
import Panel
import Init
import VMManager
import Apps
import Platform
import Fleet
#if canImport(Glibc)
import Glibc
#endif

/// The panel's backend: VM calls go to the VM manager, disks to discovery,
/// installs to the installer's task list. VM statuses are read at once from
/// what the manager publishes.
struct VMManagerBackend: PanelBackend, ImmediateVMStatus {
    let manager: VMManager
    let hostname: String?
    let installer: Installer
    /// The fleet this node belongs to (nil: on its own, or since it left).
    var fleet: Fleet? {
        get { membership.fleet.withLock { $0 }.flatMap { $0.hasLeft ? nil : $0 } }
        nonmutating set { membership.fleet.withLock { $0 = newValue } }
    }
    /// Where the fleet is kept: shared by every copy of the backend, so a
    /// fleet joined through the API is the panel's at once.
    let membership: FleetMembership
    /// GRUB's per-VM entries, following the VMs; a change through the API
    /// answers once they are written (nil: none kept).
    var bootMenu: BootMenuSync? = nil
    /// The installed system's slots and upgrades (nil: not an installed system).
    var upgrader: SystemUpgrader? = nil
    let apps: AppManager
    /// The config's `network.interfaces`, shown beside the network in effect.
    var network: NetworkConfig.Interfaces? = nil

    func host() async -> HostInfo {
        var h = await manager.host(hostname: hostname)
        h.configuredNetwork = network?.json
        h.storage = StateStorage.describe(manager.stateDir)
        h.system = upgrader?.json
        return h
    }

    func upgrade(url: String) async throws -> TaskInfo {
        let u = try upgraderIdle()
        return try u.start(url: url, tasks: manager.tasks)
    }

    func beginUpgradeUpload(expectedSize: Int64?) async throws -> any SystemUpload {
        let u = try upgraderIdle()
        return try UpgradeUploadSession(upgrader: u, tasks: manager.tasks, expectedSize: expectedSize)
    }

    func upgraderIdle() throws -> SystemUpgrader {
        guard let upgrader else {
            throw UpgradeError.notInstalled("only an installed CloudBIOS system is upgraded (this one runs from \(StateStorage.describe(manager.stateDir).kind == .installed ? "an installed disk whose system partition is not mounted" : "an ISO or USB boot"))")
        }
        guard !manager.tasks.running("system", kind: "upgrade") else { throw RequestError.conflict("an upgrade is running already") }
        return upgrader
    }

    /// Reboot, shutdown and the display go to the appliance's PID 1 (the
    /// same requests its host console makes); a daemon on someone else's
    /// host leaves that host alone.
    func system(_ action: SystemAction, display vm: String?) async throws -> JSONValue {
        let pid1 = Files.readLink("/proc/1/exe") ?? "?"
        guard pid1 == Files.readLink("/proc/self/exe") else {
            throw RequestError.conflict("this machine is not run by CloudBIOS (its PID 1 is \(Names.clip(pid1))): reboot or shut it down with its own tools")
        }
        switch action {
        case .reboot:
            Log.info("panel: reboot asked for; guests are shut down first")
            Self.signalPID1(SIGTERM)
            return .object(["state": .string("rebooting")])
        case .shutdown:
            Log.info("panel: shutdown asked for; guests are shut down first")
            Self.signalPID1(SIGUSR2)
            return .object(["state": .string("shutting down")])
        case .display:
            if let vm { _ = try await manager.vm(vm) }  // 404 for an unknown VM
            try Files.writeAtomically(PE.displayRequestFile, (vm ?? "none") + "\n", mode: 0o600)
            kill(1, SIGHUP)
            Log.info("panel: local display -> \(vm ?? "none")")
            return .object(["display": vm.map { .string($0) } ?? .null])
        case .upgrade:
            // (the API sends upgrades to upgrade(url:) and beginUpgradeUpload)
            throw RequestError.badRequest("an upgrade takes {\"url\": URL} or the ISO as the body")
        }
    }

    /// Signals PID 1 half a second from now, once this request's answer is
    /// on its way: with no guest to wait for, PID 1 stops the daemon at once
    /// and the caller would otherwise see its connection closed unanswered.
    static func signalPID1(_ signal: Int32) {
        spawnThread {
            usleep(500_000)
            kill(1, signal)
        }
    }
    func listVMs() async -> [VMStatus] { await manager.list() }
    func vm(_ name: String) async throws -> VMStatus { try await manager.vm(name) }
    func listVMsNow() -> [VMStatus] { manager.listNow() }
    func vmNow(_ name: String) throws -> VMStatus { try manager.vmNow(name) }
    func createVM(_ spec: VMSpec) async throws -> VMStatus {
        let s: VMStatus
        if let fleet {
            // the name is the fleet's first: of two nodes creating it at once, one wins
            let claimed = try await fleet.claimAsync(spec.name)
            do { s = try await manager.create(spec) } catch {
                if claimed { try? await fleet.releaseAsync(spec.name) }
                throw error
            }
        } else {
            s = try await manager.create(spec)
        }
        await bootMenu?.settled()
        return s
    }
    func updateVM(_ name: String, _ spec: VMSpec) async throws -> VMStatus {
        let s = try await manager.edit(name, spec)
        await bootMenu?.settled()
        return s
    }
    func setCDROM(_ name: String, _ image: String?) async throws -> VMStatus { try await manager.setCDROM(name, image) }
    func deleteVM(_ name: String) async throws {
        try await manager.delete(name)
        await bootMenu?.settled()
        try await fleet?.releaseAsync(name)
    }
    func perform(_ action: VMAction, on name: String) async throws -> VMStatus {
        if action == .start, let fleet {
            // a VM starts only on the node that owns it (claimed now when no node does)
            _ = try await manager.vm(name)
            _ = try await fleet.claimAsync(name)
        }
        return try await manager.perform(action, on: name)
    }
    func serialLogPath(_ name: String) async throws -> String { try await manager.serialLogPath(name) }
    func screenshot(_ name: String) async throws -> [UInt8] { try await manager.screenshot(name) }
    func vncSocketPath(_ name: String) async throws -> String { try await manager.vncSocketPath(name) }
    func serialSocketPath(_ name: String) async throws -> String { try await manager.serialSocketPath(name) }

    func listImages() async -> [ImageInfo] { await manager.images() }
    func beginImageUpload(_ name: String, expectedSize: Int64?) async throws -> any ImageUpload {
        try await manager.beginImageUpload(name, expectedSize: expectedSize)
    }
    func deleteImage(_ name: String) async throws { try await manager.deleteImage(name) }

    func disks() async throws -> JSONValue { Disks.list().json }
    func startInstall(_ body: JSONValue) async throws -> TaskInfo { try installer.startInstall(body) }
    func task(_ id: String) async throws -> TaskInfo {
        guard let t = installer.task(id) ?? manager.tasks.task(id) else { throw RequestError.notFound("no task '\(Names.clip(id))'") }
        return t
    }
    func tasks() async -> [TaskInfo] { installer.tasks() + manager.tasks.all() }
    func importVM(image: String, name: String) async throws -> TaskInfo {
        try await manager.startVMImport(image: image, name: name)
    }
    func importImage(_ name: String, url: String, sha256: String?) async throws -> TaskInfo {
        try await manager.startImport(name, url: url, sha256: sha256)
    }

    func snapshots(_ name: String) async throws -> JSONValue { try await manager.snapshots(name).json }
    func takeSnapshot(_ name: String, snapshot: String, memory: Bool) async throws -> TaskInfo {
        try await manager.startSnapshot(name, snapshot: snapshot, memory: memory)
    }
    func revertSnapshot(_ name: String, snapshot: String) async throws -> TaskInfo {
        try await manager.startRevert(name, snapshot: snapshot)
    }
    func deleteSnapshot(_ name: String, snapshot: String) async throws -> JSONValue {
        try await manager.deleteSnapshot(name, snapshot: snapshot).json
    }
    func cloneVM(_ name: String, _ body: [String: JSONValue]) async throws -> TaskInfo {
        try await manager.startClone(name, body: body)
    }

    func metrics() async -> String { await manager.metrics() }

    func backupVM(_ name: String, mode: String) async throws -> TaskInfo {
        try await manager.startBackup(name, mode: BackupMode(rawValue: mode) ?? .auto)
    }
    func listBackups(vm: String?) async throws -> JSONValue { .array(try await manager.listBackups(vm: vm).map(\.summary)) }
    func backup(_ id: String) async throws -> JSONValue { try await manager.backup(id).json }
    func deleteBackup(_ id: String) async throws { try await manager.deleteBackup(id) }
    func restoreBackup(_ id: String, overrides: [String: JSONValue]) async throws -> TaskInfo {
        try await manager.startRestore(id, overrides: overrides)
    }
    func verifyBackup(_ id: String) async throws -> TaskInfo { try await manager.startVerify(id) }
}

extension ImageUploadSession: ImageUpload {}
extension UpgradeUploadSession: SystemUpload {
    func finish() async throws -> TaskInfo { try finishUpgrade() }
}

extension VMManager {
    /// The names of the VMs that are not stopped (running, starting,
    /// paused, stopping): what a node leaving or joining a fleet, or a
    /// disk becoming the data disk, must wait for.
    func activeVMNames() async -> [String] {
        list().filter { $0.state != .stopped && $0.state != .crashed }.map(\.spec.name)
    }
}

extension VMManagerBackend {
    func nodes() async throws -> JSONValue {
        guard let fleet else { throw FleetError.notInFleet }
        // "local": the node answering (the one a leave from its panel takes out)
        return .array(try await fleet.nodesAsync().map { n in
            guard case .object(var o) = n.json else { return n.json }
            o["local"] = .bool(n.name == fleet.node)
            return .object(o)
        })
    }

    func removeNode(_ name: String) async throws {
        guard let fleet else { throw FleetError.notInFleet }
        if name == fleet.node {
            // this node leaves: only once none of its VMs runs (stop them, or migrate them away, first)
            let busy = await manager.activeVMNames()
            guard busy.isEmpty else {
                throw RequestError.conflict("node '\(name)' still runs \(busy.map { "'\($0)'" }.joined(separator: ", ")): stop them or migrate them to another node before it leaves the fleet")
            }
            try await membership.leaving { try await fleet.leaveAsync() }
            stopFleetListener()
            membership.forgetCluster()
            return
        }
        try await fleet.removeAsync(name)
    }

    func joinFleet(_ request: FleetJoinRequest) async throws -> JSONValue {
        let f = try await membership.join(request, manager: manager)
        return .object(["fleet": .string(f.cluster.name), "node": .string(f.node), "address": .string(f.address)])
    }

    func joinNode(_ name: String, address: String) async throws -> JSONValue {
        guard let fleet else { throw FleetError.notInFleet }
        return .object(["initial_cluster": .array(try await fleet.admitAsync(name: name, address: address).map(JSONValue.string))])
    }
}
