import Config

/// What the HTTP layer asks of the rest of the system. The server only parses
/// HTTP into these calls and renders their answers; one owner (the VM
/// manager) holds all state. Its errors are the system's (`DomainError`:
/// a kind and a message); the API answers each with its kind's status.
public protocol PanelBackend: Sendable {
    func host() async -> HostInfo
    func listVMs() async -> [VMStatus]
    func vm(_ name: String) async throws -> VMStatus
    func createVM(_ spec: VMSpec) async throws -> VMStatus
    func updateVM(_ name: String, _ spec: VMSpec) async throws -> VMStatus
    /// Inserts a store image into the VM's CD drive (nil ejects), now.
    func setCDROM(_ name: String, _ image: String?) async throws -> VMStatus
    func deleteVM(_ name: String) async throws
    func perform(_ action: VMAction, on name: String) async throws -> VMStatus
    /// Path of the VM's serial log file (the server streams it).
    func serialLogPath(_ name: String) async throws -> String
    /// The display as PNG bytes.
    func screenshot(_ name: String) async throws -> [UInt8]
    /// Path of the VM's VNC Unix socket (the console WebSocket bridges to it).
    func vncSocketPath(_ name: String) async throws -> String
    /// The VM's interactive serial console socket.
    func serialSocketPath(_ name: String) async throws -> String

    func listImages() async -> [ImageInfo]
    /// Starts an upload; the server writes the body to it chunk by chunk.
    func beginImageUpload(_ name: String, expectedSize: Int64?) async throws -> any ImageUpload
    func deleteImage(_ name: String) async throws

    /// Block devices as JSON (`GET /api/v1/disks`).
    func disks() async throws -> JSONValue
    /// Starts an install (or a dry run, which returns a finished task with the plan).
    func startInstall(_ body: JSONValue) async throws -> TaskInfo
    /// Makes the disk `/dev/NAME` a data disk (`CB-DATA`) for the state, as
    /// a task; refusals (the boot medium, in use, holding data without
    /// `wipe`, too small) are thrown before anything is written.
    func initDisk(_ name: String, wipe: Bool) async throws -> TaskInfo
    func task(_ id: String) async throws -> TaskInfo
    func tasks() async -> [TaskInfo]
    /// Makes a VM from an OVA in the store, as a task.
    func importVM(image: String, name: String) async throws -> TaskInfo
    /// Downloads an image from a URL into the store, as a task.
    func importImage(_ name: String, url: String, sha256: String?) async throws -> TaskInfo

    /// A VM's snapshots (`[{"name", "time", "memory", "quiesced", "parent", "current", …}]`).
    func snapshots(_ name: String) async throws -> JSONValue
    /// Takes a snapshot, as a task.
    func takeSnapshot(_ name: String, snapshot: String, memory: Bool) async throws -> TaskInfo
    /// Reverts to a snapshot, as a task.
    func revertSnapshot(_ name: String, snapshot: String) async throws -> TaskInfo
    /// Deletes a snapshot; the list after it.
    func deleteSnapshot(_ name: String, snapshot: String) async throws -> JSONValue
    /// Clones a VM (`{"name", "linked", …spec overrides}`), as a task.
    func cloneVM(_ name: String, _ body: [String: JSONValue]) async throws -> TaskInfo

    /// Prometheus text exposition of the VM manager's metrics.
    func metrics() async -> String

    /// Asks the appliance's PID 1 to reboot or power off (guests shut down
    /// cleanly first), or to show another VM (nil: none) on the local
    /// display now. What it answers with is the body of the 202.
    func system(_ action: SystemAction, display vm: String?) async throws -> JSONValue

    /// `POST /api/v1/system/upgrade` with `{"url": …}`: an installed system
    /// gets the ISO's version in its other slot and tries it at the next boot.
    func upgrade(url: String) async throws -> TaskInfo
    /// The same with the ISO as the raw body.
    func beginUpgradeUpload(expectedSize: Int64?) async throws -> any SystemUpload

    /// The fleet's nodes (`GET /api/v1/nodes`), each up or down.
    func nodes() async throws -> JSONValue
    /// Removes a node that is down from the fleet, or makes this one leave it.
    func removeNode(_ name: String) async throws
    /// This machine joins a running fleet now, through one of its nodes
    /// (`POST /api/v1/cluster/join`); what it joined as.
    func joinFleet(_ request: FleetJoinRequest) async throws -> JSONValue

    /// Starts a backup of the VM (`auto`, `full`, `incremental`), as a task.
    func backupVM(_ name: String, mode: String) async throws -> TaskInfo
    /// The backups' summaries, newest first (of one VM when given).
    func listBackups(vm: String?) async throws -> JSONValue
    /// One backup's whole record (its `backup.json`).
    func backup(_ id: String) async throws -> JSONValue
    func deleteBackup(_ id: String) async throws
    /// A new VM from a backup (the body's spec keys override the backed-up ones), as a task.
    func restoreBackup(_ id: String, overrides: [String: JSONValue]) async throws -> TaskInfo
    /// Recomputes the checksums of the backup's chain, as a task.
    func verifyBackup(_ id: String) async throws -> TaskInfo
    /// Adds a node to the fleet's etcd; the initial cluster it starts with.
    func joinNode(_ name: String, address: String) async throws -> JSONValue
    /// Moves a running VM live to another node of the fleet, as a task.
    func migrate(_ name: String, to node: String) async throws -> TaskInfo
    /// The destination's steps of a migration (`prepare`, `finish`, `abort`).
    func incoming(_ name: String, _ body: JSONValue) async throws -> JSONValue
    /// The rest of the fleet, when this node is in one.
    var fleetRelay: (any FleetRelay)? { get }

    /// Apps (container images as microVMs), as JSON objects.
    func listApps() async -> [JSONValue]
    func app(_ name: String) async throws -> JSONValue
    /// Pulls the image and boots the app (`body` as `POST /api/v1/apps` takes it).
    func createApp(_ body: JSONValue) async throws -> JSONValue
    func deleteApp(_ name: String) async throws
    func stopApp(_ name: String) async throws -> JSONValue
    /// The file holding the app's stdout and stderr.
    func appLogPath(_ name: String) async throws -> String
    /// Runs `cmd` in the app: `{"exit_code", "stdout", "stderr"}`.
    func execApp(_ name: String, _ cmd: [String]) async throws -> JSONValue
}

/// `POST /api/v1/system/{action}`.
public enum SystemAction: String, Sendable, Equatable, CaseIterable {
    case reboot, shutdown, display, upgrade
}

/// Backups (`/api/v1/backups…`); a backend without them answers 409.
extension PanelBackend {
    public func backupVM(_ name: String, mode: String) async throws -> TaskInfo { throw RequestError.conflict("backups are not available here") }
    public func listBackups(vm: String?) async throws -> JSONValue { .array([]) }
    public func backup(_ id: String) async throws -> JSONValue { throw RequestError.notFound("no backup '\(id)'") }
    public func deleteBackup(_ id: String) async throws { throw RequestError.notFound("no backup '\(id)'") }
    public func restoreBackup(_ id: String, overrides: [String: JSONValue]) async throws -> TaskInfo {
        throw RequestError.notFound("no backup '\(id)'")
    }
    public func verifyBackup(_ id: String) async throws -> TaskInfo { throw RequestError.notFound("no backup '\(id)'") }
}

extension PanelBackend {
    public func initDisk(_ name: String, wipe: Bool) async throws -> TaskInfo {
        throw RequestError.conflict("this daemon does not make data disks")
    }

    public func snapshots(_ name: String) async throws -> JSONValue { throw RequestError.conflict("snapshots are not available here") }
    public func takeSnapshot(_ name: String, snapshot: String, memory: Bool) async throws -> TaskInfo {
        throw RequestError.conflict("snapshots are not available here")
    }
    public func revertSnapshot(_ name: String, snapshot: String) async throws -> TaskInfo {
        throw RequestError.conflict("snapshots are not available here")
    }
    public func deleteSnapshot(_ name: String, snapshot: String) async throws -> JSONValue {
        throw RequestError.conflict("snapshots are not available here")
    }
    public func cloneVM(_ name: String, _ body: [String: JSONValue]) async throws -> TaskInfo {
        throw RequestError.conflict("clones are not available here")
    }

    public func system(_ action: SystemAction, display vm: String?) async throws -> JSONValue {
        throw RequestError.conflict("this daemon does not manage the machine it runs on")
    }

    public func upgrade(url: String) async throws -> TaskInfo {
        throw RequestError.conflict("this daemon does not upgrade the machine it runs on (only an installed CloudBIOS system has system slots)")
    }

    public func beginUpgradeUpload(expectedSize: Int64?) async throws -> any SystemUpload {
        throw RequestError.conflict("this daemon does not upgrade the machine it runs on (only an installed CloudBIOS system has system slots)")
    }

    public func nodes() async throws -> JSONValue {
        throw RequestError.conflict("this node is in no fleet (cloudbios.yaml has no cluster: section)")
    }

    public func removeNode(_ name: String) async throws {
        throw RequestError.conflict("this node is in no fleet (cloudbios.yaml has no cluster: section)")
    }

    public func joinNode(_ name: String, address: String) async throws -> JSONValue {
        throw RequestError.conflict("this node is in no fleet (cloudbios.yaml has no cluster: section)")
    }

    public func joinFleet(_ request: FleetJoinRequest) async throws -> JSONValue {
        throw RequestError.conflict("this daemon does not join fleets (it keeps no config file to hold the cluster: section)")
    }

    public func migrate(_ name: String, to node: String) async throws -> TaskInfo {
        throw RequestError.conflict("this node is in no fleet (cloudbios.yaml has no cluster: section)")
    }

    public func incoming(_ name: String, _ body: JSONValue) async throws -> JSONValue {
        throw RequestError.conflict("this node is in no fleet (cloudbios.yaml has no cluster: section)")
    }
}

/// A request body streamed into a file chunk by chunk (an image into the
/// store, an ISO for a system upgrade).
public protocol BodySink: AnyObject, Sendable {
    func write(_ chunk: UnsafeRawBufferPointer) throws
    func abort()
}

/// The ISO of `POST /api/v1/system/upgrade` sent as the raw body: checked
/// and written into the system slot not running on `finish`, as a task.
public protocol SystemUpload: BodySink {
    func finish() async throws -> TaskInfo
}

/// A backend whose VM statuses can be read at once from any thread (its
/// owner publishes what they are made of on every change), so that the
/// HTTP threads answer `GET /api/v1/vms` and `GET /api/v1/vms/{name}`
/// themselves instead of waiting on the owner. The answers are the ones
/// `listVMs` and `vm` give.
public protocol ImmediateVMStatus: Sendable {
    func listVMsNow() -> [VMStatus]
    func vmNow(_ name: String) throws -> VMStatus
}

/// A streaming upload into the image store: the body goes to a temporary file
/// and becomes visible under its name only on `finish`.
public protocol ImageUpload: BodySink {
    func write(_ chunk: UnsafeRawBufferPointer) throws
    func finish() async throws -> ImageInfo
    func abort()
}
