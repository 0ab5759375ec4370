#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU
import Synchronization

/// How `network: nat` is provided.
public enum NATMode: String, Sendable, CaseIterable {
    /// Use the `cbnat0` bridge when it exists, else QEMU user networking.
    case auto
    /// Set up `cbnat0` (bridge, DHCP, masquerading) and use taps on it.
    case bridge
    /// Always QEMU user networking.
    case user
}

public struct VMManagerOptions: Sendable {
    public var stateDir: String
    public var qemuBinary: String = "qemu-system-x86_64"
    public var kvmProbeTimeout: Double = 2
    public var nat: NATMode = .auto
    /// The NIC that `vmbr0` is built on for `network: bridge`
    /// (`network.bridge_port`); nil picks the wired NIC with the default route.
    public var bridgePort: String?
    /// Whether `network: bridge` may create `vmbr0` when it is missing.
    public var createBridge = true
    /// How long an ACPI shutdown may take before the VM is powered off.
    public var shutdownTimeout: Double = 60
    /// CA certificates (PEM) that `https://` image URLs are verified
    /// against; nil uses the system's trust store.
    public var trustFile: String?
    /// Largest image upload.
    public var maxImageSize: Int64 = 64 << 30
    /// The SSH keys a `cloud_init:` without keys of its own gets (the panel
    /// users', set at first run).
    public var defaultSSHKeys: @Sendable () -> [String] = { [] }
    /// Host ports VMs may not forward (the panel's): "tcp/8443".
    public var reservedPorts: [String: String] = [:]
    /// Who else holds a host port ("tcp/18080" → "app 'web'"), asked when a
    /// VM's forwards are checked; nil: nobody.
    public var portHolder: @Sendable (String) -> String? = { _ in nil }
    /// How long a config image's download may take in all.
    public var downloadTimeout: Double = 3600
    /// How long a download waits for the server's next bytes.
    public var downloadReadTimeout: Double = 60
    /// A running VM's serial log is rotated (to serial.log.1) past this size.
    public var serialLogLimit: Int64 = 16 << 20
    public var version: String = "0.1.0"
    /// Where backups go (`backups.target`); nil: `STATE/backups`.
    public var backupTarget: String?
    /// What retention keeps of each VM's backups (`backups.keep`).
    public var backupKeep = BackupKeep()
    public init(stateDir: String) { self.stateDir = stateDir }
}

/// The one owner of all VM state: definitions, running QEMU processes (over
/// QMP), the image store, stats. Everything else (the HTTP layer, the CLI,
/// PID 1) asks it.
///
/// State directory:
/// ```
/// STATE/vms/NAME.json              definitions (atomic writes)
/// STATE/images/NAME                image store; .sha256/NAME cached hashes; .incoming/ uploads
/// STATE/disks/NAME/diskN.qcow2     VM disks; efivars.fd for UEFI
/// STATE/run/NAME/qmp.sock vnc.sock serial.log qemu.pid qemu.log
/// ```
public actor VMManager {
    public let options: VMManagerOptions
    public nonisolated let stateDir: String
    let store: ImageStore
    // What statuses are made of is published (`facts`) on every change.
    var specs: [String: VMSpec] = [:] {
        didSet {
            facts.withLock { $0.specs = specs }
            specsChanged(from: oldValue)
        }
    }
    /// Told of every change of the VM set (`followVMSet`).
    var vmSetFollowers: [@Sendable (VMSet) -> Void] = []
    var runtimes: [String: Runtime] = [:] { didSet { publishRuntimes() } }
    /// Why a VM that is not running crashed (cleared on start).
    private var crashes: [String: String] = [:] { didSet { facts.withLock { $0.crashes = crashes } } }
    var busy: Set<String> = []
    private var uploading: Set<String> = []
    private var hostFacts: HostFacts?
    private var factsTask: Task<HostFacts, Never>?
    private var natNote: String? { didSet { facts.withLock { $0.natNote = natNote } } }
    private var bridgeSetup: Task<String, any Error>?
    /// Asked before any VM starts (whoever starts it: the API, autostart);
    /// a throw refuses the start. A fleet claims the VM there.
    private var startGate: (@Sendable (String) async throws -> Void)?
    /// Why a config image is missing from the store (its import failed), by image name.
    private var importFailures: [String: String] = [:] { didSet { facts.withLock { $0.importFailures = importFailures } } }
    /// Config images whose download is announced or under way.
    private var downloading: Set<String> = [] { didSet { facts.withLock { $0.downloading = downloading } } }
    /// A copy of what statuses are made of, for readers off the actor.
    private let facts = Mutex(StatusFacts())
    private let cpu = CPUSampler()
    private var generation = 0
    private var cpuInfo: (model: String, count: Int)?

    struct Runtime {
        var pid: Int32
        var qmp: QMPClient?
        var state: VMState
        var accel: String
        var startedAt: Double
        var generation: Int
        /// A stop/shutdown we asked for, or a guest poweroff: exit is clean.
        var cleanExit = false
        var panicked = false
        /// What the guest agent last said of the guest's addresses.
        var addresses: [GuestAddress] = []
        /// Why the guest never got past its firmware, when it did not.
        var firmwareNote: String?
        /// The devices QEMU has now (the spec it started with, plus the
        /// changes made live since): a saved edit may wait for a restart.
        var live: VMSpec?
    }

    public init(options: VMManagerOptions) throws {
        self.options = options
        self.stateDir = options.stateDir
        try QEMUCommand.checkPath(options.stateDir)
        for d in ["vms", "images", "disks", "run"] { try Files.makeDirectories("\(options.stateDir)/\(d)") }
        store = try ImageStore(directory: "\(options.stateDir)/images")
        // what writes cut short by a crash or power loss left behind
        let dirs = [options.stateDir, "\(options.stateDir)/vms", store.hashDirectory, "\(options.stateDir)/tls"]
            + Files.list("\(options.stateDir)/disks").map { "\(options.stateDir)/disks/\($0)" }
        for d in dirs {
            for f in Files.removeStaleTemporaries(in: d) { Log.info("removed \(d)/\(f), left by an interrupted write") }
        }
        var found: [String: VMSpec] = [:]
        for f in Files.list("\(options.stateDir)/vms") where f.hasSuffix(".json") {
            let path = "\(options.stateDir)/vms/\(f)"
            do {
                let spec = try VMSpec.decode(json: Files.read(path), file: path)
                try spec.validate()
                guard "\(spec.name).json" == f else { throw VMError.invalid("name does not match the file name") }
                found[spec.name] = spec
            } catch {
                Log.warning("ignoring VM definition \(path): \(error)")
            }
        }
        specs = found
        // observers do not run in an initializer
        facts.withLock { $0.specs = found }
    }

    deinit {
        for rt in runtimes.values { rt.qmp?.close() }
    }

    /// Lets go of every VM without stopping it (the daemon exiting): QMP
    /// connections close, QEMU keeps running, a later manager reattaches.
    public func detach() async {
        let anyRunning = !runtimes.isEmpty
        for (name, rt) in runtimes {
            runtimes[name]?.generation = -1
            rt.qmp?.close()
        }
        runtimes = [:]
        // the NAT this daemon built goes with it, unless guests still use it
        if !anyRunning, case .bridge? = hostFacts?.nat, options.nat == .bridge {
            await NATNetwork.tearDown(dir: "\(stateDir)/nat")
        }
    }

    public nonisolated func paths(_ name: String) -> VMPaths { VMPaths(stateDir: stateDir, name: name) }

    // MARK: - startup

    /// Reattaches to QEMU processes that kept running while no manager was
    /// up, and cleans run dirs whose QEMU is gone.
    public func reattach() async {
        for name in Files.list("\(stateDir)/run") {
            let p = paths(name)
            guard Names.checkVM(name) == nil, Files.isDirectory(p.runDir) else { continue }
            if let pid = Self.livePID(p), specs[name] != nil {
                var rt = Runtime(pid: pid, qmp: nil, state: .running, accel: Self.accelOf(pid), startedAt: Self.startTime(pid),
                                 generation: nextGeneration(), live: specs[name])
                runtimes[name] = rt
                do {
                    rt.qmp = try await connectQMP(name, generation: rt.generation, timeout: 5)
                    runtimes[name]?.qmp = rt.qmp
                    await refreshState(name)
                    Log.info("reattached to VM \(name) (pid \(pid), \(runtimes[name]?.state.rawValue ?? "?"))")
                    watchAgent(name, generation: rt.generation)
                } catch {
                    Log.warning("VM \(name) runs (pid \(pid)) but its QMP socket does not answer: \(error)")
                }
            } else if Self.livePID(p) == nil {
                Self.killStaleDiskHolder(p)
                // QEMU removes its pidfile when it exits cleanly (guest
                // poweroff, quit); one left behind means it died.
                if Files.exists(p.pidFile), specs[name] != nil {
                    crashes[name] = "QEMU exited while the daemon was not running"
                    Log.warning("VM \(name): \(crashes[name]!)")
                }
                cleanRunDir(p)
            }
        }
    }

    /// Starts VMs with `autostart: true` (of `names`, when given) in
    /// `order`, then by name. A VM that needs an image still downloading is
    /// left alone; their names are returned, to start once the downloads end.
    @discardableResult
    public func autostart(_ names: [String]? = nil) async -> [String] {
        var waiting: [String] = []
        let list = specs.values.filter { $0.autostart && !$0.template && names?.contains($0.name) != false }
            .sorted { ($0.order, $0.name) < ($1.order, $1.name) }
        for spec in list where runtimes[spec.name] == nil {
            if spec.imageNames.contains(where: { downloading.contains($0) && !store.exists($0) }) {
                Log.info("VM \(spec.name) starts once its images are downloaded")
                waiting.append(spec.name)
                continue
            }
            do {
                _ = try await start(spec.name)
                Log.info("autostarted VM \(spec.name)")
            } catch {
                Log.error("autostart of VM \(spec.name) failed: \(error)")
            }
        }
        return waiting
    }

    /// Marks config images as downloading before their download starts (see
    /// `importImages`): their VMs say so, and `autostart` waits for them.
    public func announceDownloads(_ sources: [ImageSource]) {
        for src in sources where src.file == nil && src.url != nil { downloading.insert(src.name) }
    }

    /// Imports the config's images (idempotent: an image whose content already
    /// matches is left alone). Returns one message per failure.
    public func importImages(_ sources: [ImageSource], baseDirectory: String) async -> [String] {
        var failures: [String] = []
        for src in sources {
            do {
                if let p = Names.checkImage(src.name) { throw ImageError.invalid(p) }
                let store = self.store
                if src.file == nil, let url = src.url {
                    defer { downloading.remove(src.name) }
                    // downloads are idempotent by name and hash: skip when the stored image matches
                    if store.exists(src.name), let want = src.sha256, (try? await blocking { try store.hash(src.name) }) == want { continue }
                    if store.exists(src.name), src.sha256 == nil { importFailures[src.name] = nil; continue }
                    if !referencingVMs(src.name).filter({ runtimes[$0] != nil }).isEmpty {
                        throw ImageError.conflict("image '\(src.name)' is in use by a running VM; not replaced")
                    }
                    let limits = Download.Limits(size: options.maxImageSize, deadline: now() + options.downloadTimeout,
                                                 readTimeout: options.downloadReadTimeout)
                    let trust = options.trustFile
                    Log.info("downloading image \(src.name) from \(url)")
                    let want = src.sha256
                    do {
                        _ = try await blocking { try store.download(url, as: src.name, sha256: want, limits: limits, caFile: trust) }
                    } catch ImageStore.DownloadError.fetch(let error) {
                        let m = "image '\(src.name)': download failed: \(error)"
                        if case .tooLarge? = error as? ImageError { throw ImageError.tooLarge(m) }
                        throw ImageError.invalid(m)
                    } catch ImageStore.DownloadError.sha256Mismatch(let h) {
                        throw ImageError.invalid("image '\(src.name)': sha256 of \(url) is \(h), expected \(want ?? "")")
                    }
                    Log.info("downloaded image \(src.name) from \(url)")
                    importFailures[src.name] = nil
                    continue
                }
                guard let file = src.file else { throw ImageError.invalid("image '\(src.name)' needs file or url") }
                let path = file.hasPrefix("/") ? file : "\(baseDirectory)/\(file)"
                guard Files.exists(path) else { throw ImageError.sourceMissing(name: src.name, path: path) }
                let sourceHash = try await blocking { try sha256File(path) }
                if let expected = src.sha256, expected != sourceHash {
                    throw ImageError.invalid("image '\(src.name)': sha256 of \(path) is \(sourceHash), expected \(expected)")
                }
                if store.exists(src.name), (try? await blocking { try store.hash(src.name) }) == sourceHash {
                    continue
                }
                if !referencingVMs(src.name).filter({ runtimes[$0] != nil }).isEmpty {
                    throw ImageError.conflict("image '\(src.name)' changed but is in use by a running VM; not replaced")
                }
                _ = try await blocking { try store.importFile(path, as: src.name, sha256: sourceHash) }
                Log.info("imported image \(src.name) from \(path)")
                importFailures[src.name] = nil
            } catch {
                failures.append("\(error)")
                if !store.exists(src.name) { importFailures[src.name] = "\(error)" }
                Log.error("\(error)")
            }
        }
        return failures
    }

    /// Applies the config's `vms:` as `ConfigLedger` decides: entries new or
    /// changed since last applied create or update their VM (a running one
    /// at its next stop and daemon start); unchanged entries leave the state
    /// dir's definition (API edits, API deletions) as it is.
    public func applyConfig(_ vms: [VMSpec]) -> [String] {
        var failures: [String] = []
        let ledgerPath = "\(stateDir)/\(ConfigLedger.fileName)"
        var ledger = ConfigLedger.load(ledgerPath)
        let before = ledger
        ledger.retain(only: Set(vms.map(\.name)))
        for var spec in vms {
            spec.assignDiskIDs()
            do {
                switch ledger.decide(spec, existing: specs[spec.name]) {
                case .keep:
                    continue
                case .record:
                    break
                case .create:
                    _ = try create(spec, requireImages: false)
                case .update:
                    if runtimes[spec.name] != nil || busy.contains(spec.name) {
                        Log.warning("VM \(spec.name) differs from its entry in the config file but is running; the entry applies once it is stopped and the daemon starts again")
                        continue
                    }
                    _ = try update(spec.name, spec, requireImages: false)
                    Log.info("VM \(spec.name): its entry in the config file changed; definition updated")
                }
                ledger.applied[spec.name] = ConfigLedger.fingerprint(spec)
                // the definition is kept (it is the config's); the VM says what it lacks
                if let missing = missingImagesMessage(spec) {
                    failures.append("VM \(spec.name): \(missing)")
                }
            } catch {
                failures.append("VM \(spec.name): \(error)")
            }
        }
        if ledger != before {
            do { try ledger.save(ledgerPath) } catch { failures.append("cannot save \(ledgerPath): \(error)") }
        }
        return failures
    }

    // MARK: - definitions

    public func list() -> [VMStatus] { listNow() }

    public func vm(_ name: String) throws(VMError) -> VMStatus { try vmNow(name) }

    /// Every VM's status, read at once from any thread: the same answer as
    /// `list()`, as of the last change the manager finished.
    public nonisolated func listNow() -> [VMStatus] {
        facts.withLock { $0 }.list(store: store, cpu: cpu)
    }

    /// A VM's status, read at once from any thread (see `listNow`).
    public nonisolated func vmNow(_ name: String) throws(VMError) -> VMStatus {
        guard let s = facts.withLock({ $0 }).status(name, store: store, cpu: cpu) else { throw .notFound(name: name) }
        return s
    }

    /// Creates a VM. Every image it names must be in the store (422 naming
    /// the first missing one); `requireImages: false` is for the config
    /// file's VMs, whose images may have failed to import: the VM is defined
    /// and its status says which image is missing.
    public func create(_ spec: VMSpec, requireImages: Bool = true) throws(VMError) -> VMStatus {
        var spec = spec
        spec.assignDiskIDs()
        try spec.validate()
        guard specs[spec.name] == nil else { throw .exists(name: spec.name) }
        try checkSocketPaths(spec.name)
        try checkForwards(spec)
        if requireImages { try checkImages(spec) }
        try save(spec)
        specs[spec.name] = spec
        if !spec.forwards.isEmpty { Task { await self.refreshForwards() } }
        return status(spec.name)!
    }

    public func update(_ name: String, _ spec: VMSpec, requireImages: Bool = true) throws(VMError) -> VMStatus {
        guard let old = specs[name] else { throw .notFound(name: name) }
        let spec = try replacement(for: old, spec)
        guard runtimes[name] == nil, !busy.contains(name) else { throw .conflict(notIdleMessage(name)) }
        try checkForwards(spec)
        if requireImages { try checkImages(spec) }
        try save(spec)
        specs[name] = spec
        if spec.forwards != old.forwards { Task { await self.refreshForwards() } }
        return status(name)!
    }

    /// `PUT /api/v1/vms/{name}`: on a stopped VM an update; on a running
    /// one the definition is saved and what can change live does now — a
    /// grown disk is resized (the guest sees it), a changed `cdrom` swaps
    /// the medium; added or removed disks and the rest apply at the next
    /// start. A shrink is refused either way.
    public func edit(_ name: String, _ spec: VMSpec) async throws -> VMStatus {
        guard let old = specs[name] else { throw VMError.notFound(name: name) }
        guard let rt = runtimes[name] else { return try update(name, spec) }
        guard rt.state != .starting, !busy.contains(name), let qmp = rt.qmp else { throw VMError.conflict("VM '\(name)' is busy; try again") }
        let new = try replacement(for: old, spec)
        try checkForwards(new)
        try checkImages(new)
        var live = rt.live ?? old
        let p = paths(name)
        for d in new.disks {
            guard let id = d.id, let size = d.size, let i = live.disks.firstIndex(where: { $0.id == id }) else { continue }
            let current = (try? await DiskImage.info(p.disk(id)))?.virtualSize ?? live.disks[i].size ?? 0
            guard size > current else { continue }
            do {
                _ = try await qmp.execute("block_resize", arguments: .object(["device": .string("disk-\(id)"), "size": .int64(size)]))
            } catch {
                throw VMError.conflict("VM '\(name)': disk '\(id)' cannot grow now: \(error)")
            }
            live.disks[i].size = size
            Log.info("VM \(name): disk \(id) grown live to \(Sizes.format(size))")
        }
        if new.cdrom != live.cdrom {
            try await changeMedium(name, qmp, new.cdrom)
            live.cdrom = new.cdrom
        }
        try save(new)
        specs[name] = new
        runtimes[name]?.live = live
        if new.forwards != old.forwards { await refreshForwards() }
        var st = try vm(name)
        if live.disks != new.disks || live.cloudInit != new.cloudInit || live.forwards != new.forwards
            || live.memory != new.memory || live.cpus != new.cpus || live.firmware != new.firmware || live.network != new.network {
            st.message = "saved; some changes apply at the next start"
        }
        return st
    }

    /// `POST /api/v1/vms/{name}/cdrom`: inserts a store image (nil ejects),
    /// now when the VM runs, and keeps it in the definition.
    public func setCDROM(_ name: String, _ image: String?) async throws -> VMStatus {
        guard var spec = specs[name] else { throw VMError.notFound(name: name) }
        if let image {
            if let e = Names.checkImage(image) { throw VMError.invalid(e) }
            guard store.exists(image) else { throw VMError.invalid("image '\(image)' is not in the image store") }
        }
        if let rt = runtimes[name] {
            guard let qmp = rt.qmp, rt.state != .starting else { throw VMError.conflict("VM '\(name)' is busy; try again") }
            try await changeMedium(name, qmp, image)
            runtimes[name]?.live?.cdrom = image
        }
        spec.cdrom = image
        try save(spec)
        specs[name] = spec
        return try vm(name)
    }

    private func changeMedium(_ name: String, _ qmp: QMPClient, _ image: String?) async throws {
        do {
            if let image {
                _ = try await qmp.execute("blockdev-change-medium", arguments: .object([
                    "id": .string("cdrom0"), "filename": .string(store.path(image)), "format": .string("raw"),
                    "read-only-mode": .string("read-only")]))
                Log.info("VM \(name): CD \(image) inserted")
            } else {
                _ = try await qmp.execute("eject", arguments: .object(["id": .string("cdrom0"), "force": .bool(true)]))
                Log.info("VM \(name): CD ejected")
            }
        } catch {
            throw VMError.conflict("VM '\(name)': the CD cannot change now: \(error)")
        }
    }

    /// `spec` as the new definition of `old`: its disks' ids given, valid,
    /// not renamed, no disk shrunk (a disk keeps its id for life; it can
    /// grow, never shrink).
    private func replacement(for old: VMSpec, _ spec: VMSpec) throws(VMError) -> VMSpec {
        var new = spec
        new.assignDiskIDs()
        try checkShrink(old: old, new: new)
        guard new.name == old.name else { throw .invalid("the body's name '\(Names.clip(new.name))' differs from '\(old.name)'; VMs cannot be renamed") }
        if old.template, !new.template { try checkNoLinkedClones(old.name, "stop being a template") }
        try new.validate()
        return new
    }

    private func checkShrink(old: VMSpec, new: VMSpec) throws(VMError) {
        for d in new.disks {
            guard let id = d.id, let before = old.disks.first(where: { $0.id == id }), let was = before.size else { continue }
            if let now = d.size, now < was {
                throw .invalid("disk '\(id)' cannot shrink from \(Sizes.format(was)) to \(Sizes.format(now)) (its data would be lost)")
            }
        }
    }

    public func delete(_ name: String) throws(VMError) {
        guard specs[name] != nil else { throw .notFound(name: name) }
        guard runtimes[name] == nil, !busy.contains(name) else { throw .conflict(notIdleMessage(name)) }
        try checkNoLinkedClones(name, "be deleted")
        let p = paths(name)
        Files.remove(p.definition)
        Files.removeTree(p.diskDir)
        Files.removeTree(p.runDir)
        let hadForwards = !(specs[name]?.forwards.isEmpty ?? true)
        specs[name] = nil
        crashes[name] = nil
        if hadForwards { Task { await self.refreshForwards() } }
    }

    /// 409 when a host port `spec` forwards is the panel's or another VM's.
    private func checkForwards(_ spec: VMSpec) throws(VMError) {
        for f in spec.forwards {
            let key = "\(f.proto.rawValue)/\(f.host)"
            if let owner = options.reservedPorts[key] ?? options.portHolder(key) {
                throw .conflict("host port \(f.proto.rawValue) \(f.host) is taken by \(owner)")
            }
            for (other, o) in specs where other != spec.name && o.forwards.contains(where: { $0.host == f.host && $0.proto == f.proto }) {
                throw .conflict("host port \(f.proto.rawValue) \(f.host) is forwarded to VM '\(other)' already")
            }
        }
    }

    /// 422 naming the first image of `spec` that is not in the store.
    private func checkImages(_ spec: VMSpec) throws(VMError) {
        if let m = missingImagesMessage(spec) { throw .invalid(m) }
    }

    /// "needs image 'x', which is not in the image store" (with why, when a
    /// config import of it failed), or nil when every image is there.
    func missingImagesMessage(_ spec: VMSpec) -> String? {
        facts.withLock { $0 }.missingImagesMessage(spec, store: store)
    }

    private func save(_ spec: VMSpec) throws(VMError) {
        do {
            try Files.writeAtomically(paths(spec.name).definition, spec.json.serialized(pretty: true) + "\n")
        } catch {
            throw .cannotSave(name: spec.name, reason: "\(error)")
        }
    }

    private func checkSocketPaths(_ name: String) throws(VMError) {
        // sun_path holds 107 bytes
        guard paths(name).qmpSocket.utf8.count < 108 else {
            throw .invalid("VM name '\(name)' is too long for a socket path under \(stateDir)")
        }
    }

    // MARK: - lifecycle

    public func perform(_ action: VMAction, on name: String) async throws -> VMStatus {
        guard specs[name] != nil else { throw VMError.notFound(name: name) }
        // a start in progress finishes (or fails and cleans up) first
        if action != .start, busy.contains(name) {
            throw VMError.conflict(runtimes[name] == nil ? notIdleMessage(name) : "VM '\(name)' is starting; try again once it runs")
        }
        switch action {
        case .start: return try await start(name)
        case .stop: return try await stop(name)
        case .shutdown: return try await shutdown(name)
        case .reboot:
            try await reboot(name)
        case .reset:
            try await command(name, "system_reset", needs: [.running, .paused])
        case .pause:
            try await command(name, "stop", needs: [.running])
        case .resume:
            try await command(name, "cont", needs: [.paused])
        }
        await refreshState(name)
        return try vm(name)
    }

    public func start(_ name: String) async throws -> VMStatus {
        try await start(name, paused: false)
    }

    /// Sets what is asked before any VM starts (see `startGate`).
    public func setStartGate(_ gate: @escaping @Sendable (String) async throws -> Void) { startGate = gate }

    /// Starts the VM; `paused`: QEMU comes up with its CPUs stopped (`-S`),
    /// for a saved state to be loaded before it runs; `incoming`: paused,
    /// waiting for a live migration into it (`-incoming defer`; see
    /// `prepareIncoming`).
    func start(_ name: String, paused: Bool, incoming: Bool = false) async throws -> VMStatus {
        guard let spec = specs[name] else { throw VMError.notFound(name: name) }
        if spec.template { throw VMError.conflict(Self.templateStartMessage(name)) }
        if runtimes[name] != nil { throw VMError.conflict("VM '\(name)' is already running") }
        guard !busy.contains(name) else { throw VMError.conflict("VM '\(name)' is busy") }
        busy.insert(name)
        defer { busy.remove(name) }
        if !incoming, let startGate { try await startGate(name) }
        crashes[name] = nil

        if let m = missingImagesMessage(spec) { throw VMError.invalid("VM '\(name)' \(m)") }
        if Files.exists(restoreMarker(name)) {
            throw VMError.conflict("VM '\(name)': its restore from a backup did not finish; delete it and restore again")
        }
        var host = await facts()
        if spec.network == .bridge, host.physicalBridge == nil || !Files.exists("/sys/class/net/\(host.physicalBridge!)/bridge") {
            guard options.createBridge else {
                throw VMError.unavailable("network: bridge needs the host bridge \(HostBridge.name), which does not exist here")
            }
            do {
                // one setup at a time: VMs starting together share it
                let setup: Task<String, any Error>
                if let running = bridgeSetup {
                    setup = running
                } else {
                    let port = options.bridgePort
                    setup = Task { try await HostBridge.ensure(port: port) }
                    bridgeSetup = setup
                }
                defer { bridgeSetup = nil }
                host.physicalBridge = try await setup.value
                hostFacts?.physicalBridge = host.physicalBridge
            } catch {
                throw VMError.unavailable("VM '\(name)': network: bridge: cannot set up \(HostBridge.name): \(error)")
            }
        }
        let p = paths(name)
        var argv: [String]
        do {
            argv = try QEMUCommand.argv(spec: spec, host: host, paths: p, images: ImageResolver(directory: store.directory))
        } catch {
            throw VMError.invalid(error.description)
        }
        let accel = (try? QEMUCommand.accel(for: spec, host: host))?.name ?? "tcg"
        // In the PE, QEMU is in the payload PID 1 may still be mounting.
        if let why = try await blocking({ Payload.waitUsable() }) {
            throw VMError.unavailable("VM '\(name)': the hypervisor is not available: \(why)")
        }
        guard let qemu = Launcher.which(options.qemuBinary) else {
            throw VMError.unavailable("\(options.qemuBinary) is not installed")
        }
        argv[0] = qemu
        if paused { argv.append("-S") }
        if incoming { argv += ["-incoming", "defer"] }

        try await prepareDisks(spec, p, host: host)
        cleanRunDir(p)
        Files.remove(p.serialLog)
        Files.remove(p.serialLogRotated)
        try Files.makeDirectories(p.runDir, mode: 0o700)
        if spec.network == .bridge || (spec.network == .nat && { if case .bridge = host.nat { return true }; return false }()) {
            let bridge: String
            if spec.network == .bridge { bridge = host.physicalBridge ?? "vmbr0" } else if case .bridge(let b) = host.nat { bridge = b } else { bridge = "cbnat0" }
            try await NATNetwork.createTap(QEMUCommand.tapName(for: name), bridge: bridge)
        }

        let gen = nextGeneration()
        runtimes[name] = Runtime(pid: 0, qmp: nil, state: .starting, accel: accel, startedAt: now(), generation: gen, live: spec)
        do {
            let log = try FileDescriptor.open(p.qemuLog, O_WRONLY | O_CREAT | O_TRUNC)
            let launcher = Launcher(qemu, Array(argv.dropFirst()))
            // QEMU forks and its parent exits once the guest is set up (-daemonize);
            // we reap that parent here. The daemonized QEMU is not our child.
            let status = try await blocking { () -> Int32 in
                defer { log.close() }
                let pid = try launcher.spawn(stdout: log, stderr: log)
                return Launcher.wait(pid)
            }
            guard status == 0 else {
                let why = (Files.readTrimmed(p.qemuLog) ?? "").trimmedLines(3)
                throw VMError.startFailed("QEMU failed to start VM '\(name)' (exit \(status)): \(why)")
            }
            guard let pidText = Files.readTrimmed(p.pidFile), let pid = Int32(pidText), processAlive(pid) else {
                throw VMError.startFailed("QEMU for VM '\(name)' exited right after starting: \((Files.readTrimmed(p.qemuLog) ?? "").trimmedLines(3))")
            }
            runtimes[name]?.pid = pid
            let qmp = try await connectQMP(name, generation: gen, timeout: 10)
            runtimes[name]?.qmp = qmp
            await refreshState(name)
        } catch {
            if let pid = runtimes[name]?.pid, pid > 0 { kill(pid, SIGKILL) }
            runtimes[name] = nil
            cleanRunDir(p)
            crashes[name] = "\(error)"
            throw error
        }
        if host.nat != .bridge("cbnat0"), spec.network == .nat, case .user(let why) = host.nat {
            Log.info("VM \(name): network nat uses QEMU user networking (\(why))")
        }
        Log.info("started VM \(name) (pid \(runtimes[name]?.pid ?? 0), \(accel))")
        watchAgent(name, generation: gen)
        if spec.kernel == nil { watchFirmware(name, generation: gen) }
        return status(name)!
    }

    /// Asks the guest agent for the guest's addresses while the VM runs:
    /// every 3 s until it first answers, then every 15 s.
    private func watchAgent(_ name: String, generation gen: Int) {
        guard let spec = specs[name], spec.agent else { return }
        let socket = paths(name).agentSocket
        Task { [weak self] in
            var answered = false
            while let self, await self.isCurrent(name, generation: gen) {
                if let found = (try? await blocking({ GuestAgent.addresses(socket: socket, timeout: 2) })) ?? nil {
                    await self.setAddresses(name, generation: gen, found)
                    answered = true
                }
                try? await Task.sleep(nanoseconds: answered ? 15_000_000_000 : 3_000_000_000)
            }
        }
    }

    private func isCurrent(_ name: String, generation gen: Int) -> Bool { runtimes[name]?.generation == gen }

    /// Watches the first minutes of a boot for a firmware that finds
    /// nothing to boot (SeaBIOS's debug port, OVMF falling back to its
    /// shell on the serial console) and says so in the VM's status.
    private func watchFirmware(_ name: String, generation gen: Int) {
        let p = paths(name)
        Task { [weak self] in
            for _ in 0..<90 {
                try? await Task.sleep(nanoseconds: 2_000_000_000)
                guard let self, await self.isCurrent(name, generation: gen) else { return }
                if let why = FirmwareWatch.problem(firmwareLog: p.firmwareLog, serialLog: p.serialLog) {
                    await self.setFirmwareNote(name, generation: gen, why)
                    Log.warning("VM \(name): \(why)")
                    return
                }
            }
        }
    }

    private func setFirmwareNote(_ name: String, generation gen: Int, _ why: String) {
        guard runtimes[name]?.generation == gen else { return }
        runtimes[name]?.firmwareNote = why
    }

    private func setAddresses(_ name: String, generation gen: Int, _ a: [GuestAddress]) {
        guard runtimes[name]?.generation == gen else { return }
        runtimes[name]?.addresses = a
    }

    /// On the NAT bridge, the fixed addresses and port forwards of the
    /// `network: nat` VMs follow their definitions (QEMU user networking
    /// carries its forwards in the VM's own command line).
    func refreshForwards() async {
        guard case .bridge? = hostFacts?.nat else { return }
        let vms = specs.values.filter { $0.network == .nat }.sorted { $0.name < $1.name }
            .map { (name: $0.name, mac: QEMUCommand.mac(for: $0.name), forwards: $0.forwards) }
        do {
            try await NATNetwork.applyForwards(dir: "\(stateDir)/nat", vms: vms)
        } catch {
            Log.error("NAT forwards: \(error)")
        }
    }

    /// Hard power-off: QMP `quit`, then SIGKILL if QEMU lingers.
    public func stop(_ name: String) async throws -> VMStatus {
        guard var rt = runtimes[name] else { throw VMError.notRunning(name: name) }
        rt.cleanExit = true
        runtimes[name] = rt
        if let qmp = rt.qmp { _ = try? await qmp.execute("quit", timeout: 3) }
        if !(await waitForExit(rt.pid, timeout: 5)) {
            kill(rt.pid, SIGKILL)
            _ = await waitForExit(rt.pid, timeout: 5)
        }
        processExited(name, generation: rt.generation)
        return try vm(name)
    }

    /// A clean reboot: the guest agent's `guest-shutdown` (mode reboot)
    /// when it answers, else Ctrl+Alt+Del, which Linux and Windows take as
    /// a reboot request. (`reset` is the hard one.)
    private func reboot(_ name: String) async throws {
        guard let rt = runtimes[name], let qmp = rt.qmp, rt.state == .running else {
            throw VMError.notRunning(name: name)
        }
        if let spec = specs[name], spec.agent {
            let socket = paths(name).agentSocket
            // sent only once the agent answered a sync; guest-shutdown itself never replies
            let sent = try? await blocking {
                GuestAgent.send(socket: socket, "guest-shutdown", arguments: .object(["mode": .string("reboot")]))
            }
            if sent == true {
                Log.info("VM \(name): reboot asked through the guest agent")
                return
            }
        }
        let keys: [JSONValue] = ["ctrl", "alt", "delete"].map { .object(["type": .string("qcode"), "data": .string($0)]) }
        _ = try await qmp.execute("send-key", arguments: .object(["keys": .array(keys)]))
        Log.info("VM \(name): reboot asked with Ctrl+Alt+Del (no guest agent answered)")
    }

    /// ACPI power button; powers off after `shutdownTimeout` if the guest ignores it.
    public func shutdown(_ name: String) async throws -> VMStatus {
        guard let rt = runtimes[name], let qmp = rt.qmp else { throw VMError.notRunning(name: name) }
        runtimes[name]?.cleanExit = true
        try await qmp.execute("system_powerdown", timeout: 5)
        let timeout = options.shutdownTimeout, gen = rt.generation, pid = rt.pid
        let agentSocket = specs[name]?.agent == true ? paths(name).agentSocket : nil
        Task { [weak self] in
            guard let self else { return }
            // a guest that ignores ACPI (no acpid, a login screen's policy)
            // is asked through its agent halfway
            if let agentSocket, !(await self.waitForExit(pid, timeout: timeout / 2)) {
                if (try? await blocking({ GuestAgent.send(socket: agentSocket, "guest-shutdown", arguments: .object(["mode": .string("powerdown")])) })) == true {
                    Log.info("VM \(name): ACPI ignored so far; shutdown asked through the guest agent")
                }
            }
            if await self.waitForExit(pid, timeout: agentSocket == nil ? timeout : timeout / 2) {
                await self.processExited(name, generation: gen)
            } else if await self.runtimes[name]?.generation == gen {
                Log.warning("VM \(name) did not shut down within \(Int(timeout)) s; powering it off")
                _ = try? await self.stop(name)
            }
        }
        return try vm(name)
    }

    private func command(_ name: String, _ cmd: String, needs: Set<VMState>) async throws {
        guard let rt = runtimes[name], let qmp = rt.qmp else { throw VMError.notRunning(name: name) }
        guard needs.contains(rt.state) else { throw VMError.conflict("VM '\(name)' is \(rt.state.rawValue)") }
        do {
            try await qmp.execute(cmd, timeout: 10)
        } catch let e as QMPError {
            throw VMError.conflict("VM '\(name)': \(e.desc)")
        }
    }

    // MARK: - console, serial, screenshot

    /// Keeps each running VM's serial log under `serialLogLimit`: past it the
    /// log is copied to serial.log.1 (replacing the one before) and cut to
    /// nothing, so a guest flooding its console holds at most about twice
    /// the limit on disk (bytes written between the copy and the cut are lost).
    public func rotateSerialLogs() async {
        for (name, rt) in runtimes where rt.qmp != nil {
            let p = paths(name)
            guard let size = Files.size(p.serialLog), size > options.serialLogLimit else { continue }
            do {
                // QEMU appends to the log (O_APPEND): copy it aside, then
                // cut it, and its next line lands at the start again
                try Files.copy(p.serialLog, to: p.serialLogRotated)
                try syscall("truncate \(p.serialLog)") { truncate(p.serialLog, 0) }
            } catch {
                Log.warning("VM \(name): cannot rotate the serial log: \(error)")
            }
        }
    }

    public func serialLogPath(_ name: String) throws(VMError) -> String {
        guard specs[name] != nil else { throw .notFound(name: name) }
        return paths(name).serialLog
    }

    public func serialSocketPath(_ name: String) throws(VMError) -> String {
        guard specs[name] != nil else { throw .notFound(name: name) }
        guard runtimes[name]?.qmp != nil else { throw .notRunning(name: name) }
        return paths(name).serialSocket
    }

    public func vncSocketPath(_ name: String) throws(VMError) -> String {
        guard specs[name] != nil else { throw .notFound(name: name) }
        guard runtimes[name]?.qmp != nil else { throw .notRunning(name: name) }
        return paths(name).vncSocket
    }

    /// The display as PNG (QMP `screendump` with `format: png`), or as PPM
    /// with `format: "ppm"`.
    public func screenshot(_ name: String, format: String = "png") async throws -> [UInt8] {
        guard format == "png" || format == "ppm" else { throw VMError.badRequest("format must be png or ppm") }
        guard specs[name] != nil else { throw VMError.notFound(name: name) }
        guard let qmp = runtimes[name]?.qmp else { throw VMError.notRunning(name: name) }
        let file = "\(paths(name).runDir)/screen-\(nextGeneration()).\(format)"
        defer { Files.remove(file) }
        try await qmp.execute("screendump", arguments: .object(["filename": .string(file), "format": .string(format)]), timeout: 10)
        return try Files.read(file)
    }

    // MARK: - images

    // MARK: - image import from a URL

    /// `POST /api/v1/images/{name}/import`: downloads `url` into the store
    /// as `name` in the background (redirects followed, sha256 checked,
    /// streamed to disk) and answers at once with the task that reports it.
    public func startImport(_ name: String, url: String, sha256: String?) throws(ImageError) -> TaskInfo {
        if let e = Names.checkImage(name) { throw .invalid(e) }
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.utf8.count <= 2048,
              url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .invalid("url must be an http:// or https:// URL")
        }
        if let h = sha256, h.utf8.count != 64 || !h.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) {
            throw .invalid("sha256 must be 64 lower-case hex digits")
        }
        guard !downloading.contains(name), !tasks.running(name, kind: "import") else { throw .conflict("image '\(name)' is being imported already") }
        if !referencingVMs(name).filter({ runtimes[$0] != nil }).isEmpty {
            throw .conflict("image '\(name)' is in use by a running VM; not replaced")
        }
        let task = tasks.begin("import", on: name)
        let limits = Download.Limits(size: options.maxImageSize, deadline: now() + options.downloadTimeout,
                                     readTimeout: options.downloadReadTimeout,
                                     progress: { [tasks] done, total in tasks.progress(task.id, done, total) })
        let trust = options.trustFile
        let store = self.store
        Task.detached { [tasks] in
            tasks.update(task.id) { $0.state = .running; $0.message = "downloading \(url)" }
            do {
                let h: String
                do {
                    h = try await blocking { try store.download(url, as: name, sha256: sha256, limits: limits, caFile: trust) }
                } catch ImageStore.DownloadError.fetch(let error) {
                    throw error
                } catch ImageStore.DownloadError.sha256Mismatch(let got) {
                    throw ImageError.invalid("sha256 of the download is \(got), expected \(sha256 ?? "")")
                }
                let facts = try? await DiskImage.info(store.path(name))
                tasks.update(task.id) {
                    $0.state = .succeeded; $0.progress = 100
                    $0.message = "imported '\(name)'" + (facts.map { " (\($0.format), \(Sizes.format($0.virtualSize)))" } ?? "")
                    $0.resultJSON = JSONValue.object(["name": .string(name), "sha256": .string(h),
                                                      "format": facts.map { .string($0.format) } ?? .null]).serialized()
                }
                Log.info("image \(name) imported from \(url)")
            } catch {
                tasks.update(task.id) { $0.state = .failed; $0.message = "\(error)" }
                Log.error("image \(name): import from \(url) failed: \(error)")
            }
        }
        return task
    }

    /// `POST /api/v1/vms/import`: an OVA in the image store becomes a VM
    /// `name`, in the background: its disks converted to qcow2 store images
    /// (`NAME-disk0`, …), memory, CPUs and firmware from its OVF. Member
    /// names are checked before anything is extracted; a disk outside the
    /// archive is refused.
    public func startVMImport(image: String, name: String) throws(VMError) -> TaskInfo {
        if let e = Names.checkImage(image) { throw .invalid(e) }
        if let e = Names.checkVM(name) { throw .invalid(e) }
        guard store.exists(image) else { throw .invalid("image '\(image)' is not in the image store") }
        guard specs[name] == nil else { throw .exists(name: name) }
        guard let tar = Launcher.which("tar") else { throw .unavailable("tar is not installed") }
        let ova = store.path(image)
        let list = (try? Launcher(tar, ["-tf", ova]).run(mergeError: false)) ?? (status: 1, output: "")
        guard list.status == 0 else { throw .invalid("image '\(image)' is not an OVA (a tar archive)") }
        let members = list.output.split(separator: "\n").map(String.init)
        if let bad = members.first(where: { !OVFDescriptor.safeMember($0) }) {
            throw .invalid("the OVA holds a file outside itself ('\(Names.clip(bad))'); refused")
        }
        guard let ovfName = members.first(where: { $0.lowercased().hasSuffix(".ovf") }) else {
            throw .invalid("the OVA holds no .ovf descriptor")
        }
        guard let xml = try? Launcher(tar, ["-xOf", ova, ovfName]).run(mergeError: false), xml.status == 0 else {
            throw .invalid("cannot read \(ovfName) from the OVA")
        }
        let ovf = try OVFDescriptor.parse(xml.output)
        for f in ovf.diskFiles where !members.contains(f) || !OVFDescriptor.safeMember(f) {
            throw .invalid("the OVF's disk '\(Names.clip(f))' is not a file of the OVA; refused")
        }
        var spec = VMSpec(name: name)
        // what the OVF asks, within the rules' bounds
        spec.memory = min(max(ovf.memoryMiB ?? 1024, VMLimits.memoryMiB.lowerBound), VMLimits.memoryMiB.upperBound)
        spec.cpus = min(max(ovf.cpus ?? 1, VMLimits.cpus.lowerBound), VMLimits.cpus.upperBound)
        spec.firmware = ovf.uefi ? .uefi : .bios
        spec.disks = ovf.diskFiles.indices.map { DiskSpec.image("\(name)-disk\($0)", id: "disk\($0)") }
        let task = tasks.begin("import", on: image)
        let work = "\(stateDir)/images/.incoming/ova-\(name)"
        let store = self.store
        Task { [tasks] in
            tasks.update(task.id) { $0.state = .running; $0.message = "converting \(ovf.diskFiles.count) disk(s) of \(image)" }
            do {
                Files.removeTree(work)
                try Files.makeDirectories(work, mode: 0o700)
                defer { Files.removeTree(work) }
                for (i, file) in ovf.diskFiles.enumerated() {
                    try await runTool([tar, "-xf", ova, "-C", work, file])
                    // a member that is a link (to /etc/shadow, say) is refused, not read
                    var st = stat()
                    guard lstat("\(work)/\(file)", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1 else {
                        throw VMError.invalid("the OVA's disk '\(Names.clip(file))' is not a plain file; refused")
                    }
                    let (tmp, fd) = try store.createTemp(for: "\(name)-disk\(i)")
                    close(fd)
                    try await runTool(["qemu-img", "convert", "-O", "qcow2", "\(work)/\(file)", tmp])
                    try store.install(temp: tmp, as: "\(name)-disk\(i)", sha256: try sha256File(tmp))
                    Files.remove("\(work)/\(file)")
                    tasks.update(task.id) { $0.progress = (i + 1) * 90 / ovf.diskFiles.count }
                }
                let vm = try await self.create(spec)
                tasks.update(task.id) {
                    $0.state = .succeeded; $0.progress = 100
                    $0.message = "VM '\(name)' made from \(image): \(vm.spec.memory) MiB, \(vm.spec.cpus) CPU(s), \(vm.spec.disks.count) disk(s)"
                    $0.resultJSON = vm.spec.json.serialized()
                }
            } catch {
                tasks.update(task.id) { $0.state = .failed; $0.message = "\(error)" }
            }
        }
        return task
    }

    /// The long operations: imports, backups, clones, …
    public nonisolated let tasks = TaskBoard()

    /// The store's images with what qemu-img says of them (format, virtual
    /// size), looked up once per file version.
    public func images() async -> [ImageInfo] {
        var out: [ImageInfo] = []
        for n in store.names {
            guard var i = store.info(n) else { continue }
            i.inUseBy = referencingVMs(n)
            var st = stat()
            let stamp = stat(store.path(n), &st) == 0 ? "\(st.st_size):\(st.st_mtim.tv_sec):\(st.st_mtim.tv_nsec)" : ""
            if let (s, facts) = imageFacts[n], s == stamp {
                i.format = facts.format; i.virtualSize = facts.virtualSize
            } else if let facts = try? await DiskImage.info(store.path(n)) {
                imageFacts[n] = (stamp, facts)
                i.format = facts.format; i.virtualSize = facts.virtualSize
            }
            out.append(i)
        }
        return out
    }

    /// qemu-img's facts of store images, by name: (file version, facts).
    private var imageFacts: [String: (String, DiskImage.Info)] = [:]

    public func beginImageUpload(_ name: String, expectedSize: Int64?) throws(ImageError) -> ImageUploadSession {
        if let p = Names.checkImage(name) { throw .badRequest(p) }
        if let s = expectedSize, s > options.maxImageSize {
            throw .tooLarge("image '\(name)' is larger than \(Sizes.human(options.maxImageSize))")
        }
        guard !uploading.contains(name) else { throw .conflict("image '\(name)' is being uploaded already") }
        let users = referencingVMs(name)
        if store.exists(name), !users.isEmpty {
            throw .conflict("image '\(name)' is in use by \(users.joined(separator: ", ")); it cannot be replaced")
        }
        let tmp: (path: String, fd: Int32)
        do { tmp = try store.createTemp(for: name) } catch { throw .noSpace("cannot store image: \(error)") }
        uploading.insert(name)
        return ImageUploadSession(name: name, temp: tmp.path, fd: tmp.fd, expectedSize: expectedSize, maxSize: options.maxImageSize) {
            [weak self] temp, _ in
            guard let self else { throw ImageError.unavailable("shutting down") }
            return try await self.finishUpload(name, temp: temp)
        }
    }

    private func finishUpload(_ name: String, temp: String?) async throws -> ImageInfo {
        defer { uploading.remove(name) }
        guard let temp else { throw ImageError.badRequest("upload of '\(name)' aborted") }
        let users = referencingVMs(name)
        if store.exists(name), !users.isEmpty {
            Files.remove(temp)
            throw ImageError.conflict("image '\(name)' is in use by \(users.joined(separator: ", ")); it cannot be replaced")
        }
        let store = self.store
        let h = try await blocking { try sha256File(temp) }
        try store.install(temp: temp, as: name, sha256: h)
        var info = store.info(name)!
        info.inUseBy = referencingVMs(name)
        return info
    }

    public func deleteImage(_ name: String) throws(ImageError) {
        if let p = Names.checkImage(name) { throw .badRequest(p) }
        guard store.exists(name) else { throw .notFound(name: name) }
        let users = referencingVMs(name)
        guard users.isEmpty else { throw .conflict("image '\(name)' is in use by \(users.joined(separator: ", "))") }
        store.remove(name)
    }

    func referencingVMs(_ image: String) -> [String] {
        specs.values.filter { $0.imageNames.contains(image) }.map(\.name).sorted()
    }

    // MARK: - host, stats, metrics

    public func host(hostname: String? = nil) async -> HostInfo {
        let f = await facts()
        let mem = ProcStats.meminfo()
        if cpuInfo == nil { cpuInfo = ProcStats.cpu() }
        let cpu = cpuInfo!
        var h = HostInfo(hostname: hostname ?? ProcStats.hostname(), version: options.version, cpuModel: cpu.model, cpus: cpu.count,
                         memoryTotalMiB: (mem["MemTotal"] ?? 0) / 1024, memoryAvailableMiB: (mem["MemAvailable"] ?? 0) / 1024,
                         accel: f.kvmUsable ? "kvm" : "tcg",
                         accelReason: f.kvmUsable ? f.kvmReason : "KVM not usable, using TCG: \(f.kvmReason)",
                         uptimeSeconds: ProcStats.uptime())
        h.loadAverage = ProcStats.loadAverage()
        h.interfaces = NetInterfaces.list().map {
            HostInterface(name: $0.name, mac: $0.mac, state: $0.state, mtu: $0.mtu, addresses: $0.addresses, kind: $0.kind, master: $0.master)
        }
        h.gateways = NetInterfaces.defaultGateways()
        h.dns = NetInterfaces.nameServers()
        return h
    }

    public func metrics() -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        let names = specs.keys.sorted()
        family("cloudbios_vm_state", "gauge", "1 for the state each VM is in.")
        for n in names {
            let st = status(n)!.state
            for s in VMState.allCases { out += "cloudbios_vm_state{vm=\"\(n)\",state=\"\(s.rawValue)\"} \(s == st ? 1 : 0)\n" }
        }
        family("cloudbios_vm_cpu_seconds_total", "counter", "CPU time used by the VM's QEMU process.")
        var rssLines = ""
        for n in names {
            guard let rt = runtimes[n], rt.pid > 0, let p = ProcStats.process(rt.pid) else { continue }
            out += "cloudbios_vm_cpu_seconds_total{vm=\"\(n)\"} \(p.cpuSeconds)\n"
            rssLines += "cloudbios_vm_memory_rss_bytes{vm=\"\(n)\"} \(p.rssBytes)\n"
        }
        family("cloudbios_vm_memory_rss_bytes", "gauge", "Resident memory of the VM's QEMU process.")
        out += rssLines
        family("cloudbios_vm_memory_configured_bytes", "gauge", "Memory given to the guest.")
        for n in names { out += "cloudbios_vm_memory_configured_bytes{vm=\"\(n)\"} \(Int64(specs[n]!.memory) << 20)\n" }
        let imgs = store.names.compactMap { store.info($0) }
        family("cloudbios_images", "gauge", "Images in the store.")
        out += "cloudbios_images \(imgs.count)\n"
        family("cloudbios_images_bytes", "gauge", "Bytes in the image store.")
        out += "cloudbios_images_bytes \(imgs.reduce(Int64(0)) { $0 + $1.size })\n"
        family("cloudbios_vms", "gauge", "Defined VMs.")
        out += "cloudbios_vms \(names.count)\n"
        if let f = hostFacts {
            family("cloudbios_kvm_usable", "gauge", "1 when KVM works on this host.")
            out += "cloudbios_kvm_usable \(f.kvmUsable ? 1 : 0)\n"
        }
        return out
    }

    // MARK: - internals

    private func status(_ name: String) -> VMStatus? {
        facts.withLock { $0 }.status(name, store: store, cpu: cpu)
    }

    private func publishRuntimes() {
        let running = runtimes.mapValues {
            StatusFacts.Running(pid: $0.pid, state: $0.state, panicked: $0.panicked, accel: $0.accel, startedAt: $0.startedAt,
                                generation: $0.generation, addresses: $0.addresses, firmwareNote: $0.firmwareNote)
        }
        facts.withLock { $0.running = running }
    }

    private func nextGeneration() -> Int { generation += 1; return generation }

    /// The host's facts, worked out once. Callers that arrive while the
    /// probe and the network set-up run (the actor is reentrant across
    /// those awaits) wait for the same answer instead of starting a second.
    func facts() async -> HostFacts {
        if let f = hostFacts { return f }
        if let t = factsTask { return await t.value }
        let t = Task { await self.discoverFacts() }
        factsTask = t
        let f = await t.value
        factsTask = nil
        return f
    }

    private func discoverFacts() async -> HostFacts {
        if let f = hostFacts { return f }
        // In the PE the KVM module, the firmware, nft and the network
        // modules are in the payload PID 1 mounts beside the start-up.
        if let why = (try? await blocking({ Payload.waitUsable() })) ?? nil {
            Log.error("payload: \(why); VMs cannot start")
        }
        let timeout = options.kvmProbeTimeout
        let probe = (try? await blocking { KVMProbe.probe(timeout: timeout) }) ?? (usable: false, reason: "probe failed")
        if !probe.usable { Log.warning("KVM is not usable, guests run under TCG (slow): \(probe.reason)") }
        var f = HostFacts(kvmUsable: probe.usable, kvmReason: probe.reason)
        for (code, vars) in [("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
                             ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
                             ("/usr/share/qemu/OVMF_CODE.fd", "/usr/share/qemu/OVMF_VARS.fd")]
            where Files.exists(code) && Files.exists(vars) {
            f.ovmfCode = code; f.ovmfVarsTemplate = vars
            break
        }
        if Files.exists("/sys/class/net/vmbr0/bridge") { f.physicalBridge = "vmbr0" }
        f.nat = await NATNetwork.backend(mode: options.nat, stateDir: stateDir)
        if case .user(let why) = f.nat {
            natNote = "network nat: QEMU user networking (\(why))"
        }
        hostFacts = f
        await refreshForwards()
        return f
    }

    /// Creates the VM's disks that do not exist yet (blank, or a
    /// copy-on-write overlay of a store image in whatever format it is),
    /// grows the ones whose size went up, and writes the cloud-init seed.
    func prepareDisks(_ spec: VMSpec, _ p: VMPaths, host: HostFacts) async throws {
        try Files.makeDirectories(p.diskDir)
        for d in spec.disks {
            guard let id = d.id else { throw VMError.invalid("disk without an id") }
            let file = p.disk(id)
            if !Files.exists(file) {
                if let n = d.image {
                    let backing = store.path(n)
                    let info = try await DiskImage.info(backing)
                    guard DiskImage.backingFormats.contains(info.format) else {
                        throw VMError.invalid("image '\(n)' is \(info.format), which cannot back a disk (use \(DiskImage.backingFormats.joined(separator: ", ")))")
                    }
                    if let size = d.size, size < info.virtualSize {
                        throw VMError.invalid("disk '\(id)': size \(Sizes.format(size)) is smaller than image '\(n)' (\(Sizes.format(info.virtualSize)))")
                    }
                    var argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", info.format, file]
                    if let size = d.size { argv.append(String(size)) }
                    try await runTool(argv)
                } else if let size = d.size {
                    try await runTool(["qemu-img", "create", "-q", "-f", "qcow2", file, String(size)])
                }
            } else if let size = d.size {
                let info = try await DiskImage.info(file)
                if size > info.virtualSize {
                    try await runTool(["qemu-img", "resize", "-q", "-f", "qcow2", file, String(size)])
                    Log.info("VM \(spec.name): disk \(id) grown to \(Sizes.format(size))")
                }
            }
        }
        if spec.firmware == .uefi, !Files.exists(p.efiVars), let template = host.ovmfVarsTemplate {
            try Files.writeAtomically(p.efiVars, Files.read(template), mode: 0o600)
        }
        if var c = spec.cloudInit {
            if c.sshAuthorizedKeys.isEmpty { c.sshAuthorizedKeys = options.defaultSSHKeys() }
            var s = spec
            s.cloudInit = c
            try await CloudInitSeed(vm: s, mac: QEMUCommand.mac(for: spec.name)).build(at: p.cloudInitSeed)
        }
    }

    private func connectQMP(_ name: String, generation gen: Int, timeout: Double) async throws -> QMPClient {
        try await QMPClient.connect(path: paths(name).qmpSocket, timeout: timeout,
            onEvent: { [weak self] e in Task { await self?.handle(e, for: name, generation: gen) } },
            onClose: { [weak self] in Task { await self?.qmpClosed(name, generation: gen) } })
    }

    private func handle(_ e: QMPEvent, for name: String, generation gen: Int) {
        guard var rt = runtimes[name], rt.generation == gen else { return }
        switch e.name {
        case "STOP": if rt.state != .starting { rt.state = .paused }
        case "RESUME": rt.state = .running
        case "RESET": rt.panicked = false
        case "SHUTDOWN":
            // the guest powered off (or we asked): QEMU exits next
            rt.cleanExit = true
        case "GUEST_PANICKED":
            rt.panicked = true
            Log.warning("VM \(name): guest panicked")
        default: break
        }
        runtimes[name] = rt
    }

    private func qmpClosed(_ name: String, generation gen: Int) async {
        guard let rt = runtimes[name], rt.generation == gen else { return }
        if await waitForExit(rt.pid, timeout: 3) {
            processExited(name, generation: gen)
        } else if runtimes[name]?.generation == gen {
            runtimes[name]?.qmp = nil
            Log.warning("VM \(name): QMP connection lost but QEMU (pid \(rt.pid)) still runs")
        }
    }

    private func processExited(_ name: String, generation gen: Int) {
        guard let rt = runtimes[name], rt.generation == gen else { return }
        runtimes[name] = nil
        cpu.forget(name)
        rt.qmp?.close()
        if rt.panicked {
            crashes[name] = "guest panicked"
        } else if !rt.cleanExit {
            let why = (Files.readTrimmed(paths(name).qemuLog) ?? "").trimmedLines(2)
            crashes[name] = "QEMU exited unexpectedly" + (why.isEmpty ? "" : ": \(why)")
            Log.warning("VM \(name) crashed: \(crashes[name]!)")
        }
        cleanRunDir(paths(name))
        if let s = specs[name], s.network != .none { NATNetwork.removeTap(QEMUCommand.tapName(for: name)) }
    }

    /// Asks QEMU for the authoritative state.
    func refreshState(_ name: String) async {
        guard let qmp = runtimes[name]?.qmp, let r = try? await qmp.execute("query-status", timeout: 5) else { return }
        let st: VMState
        switch r["status"]?.stringValue ?? "" {
        case "running": st = .running
        case "guest-panicked", "internal-error", "io-error": st = .crashed
        case "shutdown": st = .stopped
        default: st = .paused   // paused, prelaunch, suspended, debug, inmigrate…
        }
        if st == .crashed { runtimes[name]?.panicked = true }
        if st != .crashed { runtimes[name]?.state = st }
    }

    func waitForExit(_ pid: Int32, timeout: Double) async -> Bool {
        let deadline = now() + timeout
        while processAlive(pid) {
            if now() >= deadline { return false }
            await sleep(seconds: 0.05)
        }
        return true
    }

    private func cleanRunDir(_ p: VMPaths) {
        for f in [p.qmpSocket, p.vncSocket, p.pidFile] { Files.remove(f) }
        for f in Files.list(p.runDir) where f.hasPrefix("screen-") { Files.remove("\(p.runDir)/\(f)") }
    }

    /// The pid in a run dir when it is a live QEMU of this run dir.
    static func livePID(_ p: VMPaths) -> Int32? {
        guard let t = Files.readTrimmed(p.pidFile), let pid = Int32(t), processAlive(pid) else { return nil }
        let argv = ProcStats.cmdline(pid)
        guard argv.first.map({ $0.hasSuffix("qemu-system-x86_64") }) == true,
              argv.contains(where: { $0.contains(p.qmpSocket) }) else { return nil }
        return pid
    }

    static func accelOf(_ pid: Int32) -> String {
        let argv = ProcStats.cmdline(pid)
        if let i = argv.firstIndex(of: "-accel"), i + 1 < argv.count { return argv[i + 1] }
        return "tcg"
    }

    /// When a process started, on our monotonic clock.
    static func startTime(_ pid: Int32) -> Double {
        guard let s = Files.readTrimmed("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return now() }
        let f = s[s.index(after: close)...].split(separator: " ")
        guard f.count > 19, let ticks = Double(f[19]) else { return now() }
        // starttime is in ticks since boot; CLOCK_MONOTONIC also counts from boot
        return ticks / ProcStats.clockTicks
    }
}
