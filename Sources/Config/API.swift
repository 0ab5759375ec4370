/// Types the REST API returns, shared by the daemon, the panel and the CLI.

public enum VMState: String, Sendable, Equatable, Codable, CaseIterable {
    case stopped, starting, running, paused, crashed
}

public enum VMAction: String, Sendable, Equatable, CaseIterable {
    /// `reboot` asks the guest (its agent, else Ctrl+Alt+Del); `reset` is
    /// the hard one.
    case start, stop, shutdown, reboot, reset, pause, resume
}

/// A VM as the API shows it: its spec plus live state.
public struct VMStatus: Sendable, Equatable {
    public var spec: VMSpec
    public var state: VMState
    public var pid: Int32?
    /// Why it crashed or failed to start, when it did.
    public var message: String?
    public var accel: String?
    public var cpuPercent: Double?
    public var memoryUsedMiB: Int?
    public var uptimeSeconds: Int?
    /// The guest's addresses while it runs.
    public var addresses: [GuestAddress] = []
    public init(spec: VMSpec, state: VMState) { self.spec = spec; self.state = state }
}

/// An address of a guest, as its agent (or the NAT's DHCP lease) tells.
public struct GuestAddress: Sendable, Equatable {
    public var interface: String
    public var address: String
    public var prefix: Int
    /// `ipv4` or `ipv6`.
    public var family: String
    /// `agent` or `dhcp`.
    public var source: String
    public init(interface: String, address: String, prefix: Int, family: String, source: String) {
        self.interface = interface; self.address = address; self.prefix = prefix; self.family = family; self.source = source
    }
}

public struct ImageInfo: Sendable, Equatable {
    public var name: String
    public var size: Int64
    public var sha256: String?
    public var inUseBy: [String] = []
    /// What qemu-img reads it as (qcow2, raw, vmdk, …) and its virtual size.
    public var format: String?
    public var virtualSize: Int64?
    public init(name: String, size: Int64) { self.name = name; self.size = size }
}

public struct HostInfo: Sendable, Equatable {
    public var hostname: String
    public var version: String
    public var cpuModel: String
    public var cpus: Int
    public var memoryTotalMiB: Int
    public var memoryAvailableMiB: Int
    public var accel: String          // "kvm" or "tcg"
    public var accelReason: String    // why
    public var uptimeSeconds: Int
    public var loadAverage: [Double] = []
    /// The network in effect: each interface as the kernel has it now.
    public var interfaces: [HostInterface] = []
    /// Default routes (`via` addresses) and name servers in effect.
    public var gateways: [String] = []
    public var dns: [String] = []
    /// The config's `network.interfaces` (`"dhcp"` or its entries), what
    /// PID 1 applied at boot (nil: not reported).
    public var configuredNetwork: JSONValue?
    /// Where the state lives (nil: not reported).
    public var storage: HostStorage?
    /// An installed system's slots (A/B): each one's version, the running
    /// one, the last upgrade's outcome (nil: not an installed system).
    public var system: JSONValue?
    public init(hostname: String, version: String, cpuModel: String, cpus: Int, memoryTotalMiB: Int,
                memoryAvailableMiB: Int, accel: String, accelReason: String, uptimeSeconds: Int) {
        self.hostname = hostname; self.version = version; self.cpuModel = cpuModel; self.cpus = cpus
        self.memoryTotalMiB = memoryTotalMiB; self.memoryAvailableMiB = memoryAvailableMiB
        self.accel = accel; self.accelReason = accelReason; self.uptimeSeconds = uptimeSeconds
    }
}

/// A network interface of the host as the kernel has it.
public struct HostInterface: Sendable, Equatable {
    public var name: String
    public var mac: String
    /// The kernel's operstate: `up`, `down`, `unknown`, …
    public var state: String
    public var mtu: Int
    /// CIDRs, IPv4 then IPv6 (link-local ones left out).
    public var addresses: [String]
    /// `nic`, `bond`, `vlan`, `bridge`, `tap` or `virtual`.
    public var kind: String
    /// The bond or bridge it is enslaved to.
    public var master: String?
    public init(name: String, mac: String, state: String, mtu: Int, addresses: [String], kind: String, master: String? = nil) {
        self.name = name; self.mac = mac; self.state = state; self.mtu = mtu; self.addresses = addresses; self.kind = kind; self.master = master
    }
}

public struct TaskInfo: Sendable, Equatable {
    public enum State: String, Sendable, Codable { case pending, running, succeeded, failed }
    public var id: String
    public var kind: String
    public var state: State
    /// 0…100
    public var progress: Int
    public var message: String
    /// Free-form result (the install plan for a dry run), JSON-encodable text.
    public var resultJSON: String?
    public init(id: String, kind: String, state: State, progress: Int = 0, message: String = "") {
        self.id = id; self.kind = kind; self.state = state; self.progress = progress; self.message = message
    }
}

/// What kind of refusal or failure an error of the system is. Each module
/// says which kind its errors are; only the panel turns a kind into an HTTP
/// status, and whatever shows an error shows its description.
public enum ErrorKind: Sendable, Equatable, CaseIterable {
    /// The request is malformed: a name that is not one, an argument out of form.
    case badRequest
    /// What it names does not exist.
    case notFound
    /// The present state forbids it: running, busy, in use, there already.
    case conflict
    /// Larger than allowed.
    case tooLarge
    /// Well-formed but not acceptable: a definition that breaks a rule, an
    /// image that is not in the store, a download that went wrong.
    case invalid
    /// It was tried and went wrong.
    case failed
    /// This host lacks what it needs (the hypervisor, a bridge, a tool), or
    /// is shutting down.
    case unavailable
    /// No room is left to store it.
    case noSpace
}

/// An error of the system's domain: its kind, and (its description) a
/// message a person can act on.
public protocol DomainError: Error, CustomStringConvertible {
    var kind: ErrorKind { get }
}
