import Config
import Synchronization

/// Where the boot's storage phase put the state directory.
public enum StateLocation: Equatable, Sendable {
    /// On a `CB-DATA` partition.
    case dataPartition(Volume)
    /// In RAM (a tmpfs): gone at the next boot.
    case ram
    /// Neither could be mounted: why.
    case failed(String)
}

/// What PID 1 knows after its phases produced it, for whoever reads it
/// later: the status screen, the main loop's handlers (a network change
/// from the host console, a display change from the panel, a NIC that
/// appears) and the payload's thread. Each phase publishes its result here
/// once; what changes afterwards changes here, under one lock.
public final class PEState: Sendable {
    /// One consistent view of it.
    public struct Snapshot: Sendable {
        /// The kernel command line (the `cmdline` phase).
        public var cmdline = KernelCommandLine("")
        /// The volumes found (the `volumes` phase).
        public var volumes: [Volume] = []
        /// The config phase's result.
        public var config: ConfigOutcome = .none
        /// `network.interfaces` as a list, when the config gives one:
        /// hotplugged NICs follow it, not DHCP (the `interfaces` phase).
        public var interfaces: [InterfaceConfig]?
        /// The hostname (the `hostname` phase; "cloudbios" until then).
        public var hostname = "cloudbios"
        /// Where the state directory was put (the `storage` phase).
        public var storage: StateLocation?
        /// The VM on the local display (the `services` phase; then the panel's choice).
        public var displayVM: String?
        /// Interfaces whose addressing PID 1 has settled (a DHCP client
        /// started, or a static address): hotplug leaves them alone.
        public var addressed: Set<String> = []
        /// Where the payload came from ("initramfs" or the squashfs path).
        public var payloadSource: String?
        /// The phases run, in order.
        public var completedPhases: [String] = []
    }

    private let state = Mutex(Snapshot())

    public init() {}

    /// A copy of everything now.
    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Reads one thing under the lock.
    public func read<T: Sendable>(_ body: (borrowing Snapshot) -> T) -> T {
        state.withLock { body($0) }
    }

    /// Changes it under the lock; the body's result is returned.
    @discardableResult
    public func update<T: Sendable>(_ body: (inout Snapshot) -> T) -> T {
        state.withLock { body(&$0) }
    }
}
