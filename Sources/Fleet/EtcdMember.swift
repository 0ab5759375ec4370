import Platform
#if canImport(Glibc)
import Glibc
#endif

/// This node's etcd member: Debian's `etcd` as a child of the daemon,
/// restarted when it exits, stopped with the daemon. Its client port is on
/// loopback only (the daemon is its one client) and its peer port on the
/// node's address; both speak TLS only, with the fleet's certificates
/// (`FleetPKI`), and peers must present a certificate of the fleet.
public final class EtcdMember: @unchecked Sendable {
    public struct Settings: Sendable {
        /// The member's name: the node's address, which `members` lists.
        public var name: String
        public var address: String
        /// Every first member's address (the initial cluster).
        public var initialMembers: [String]
        /// "new" for the first members, "existing" for a node that joins.
        public var initialState: String = "new"
        /// Other members as `NAME=https://ADDRESS:PORT` when joining.
        public var initialCluster: [String]? = nil
        /// Names the cluster to etcd (so two fleets' members never mix).
        public var clusterToken: String
        public var dataDir: String
        public var logFile: String
        public var clientPort = 2379
        public var peerPort = 2380
        public var pki: FleetPKI

        public init(name: String, address: String, initialMembers: [String], clusterToken: String, dataDir: String,
                    logFile: String, pki: FleetPKI) {
            self.name = name; self.address = address; self.initialMembers = initialMembers; self.clusterToken = clusterToken
            self.dataDir = dataDir; self.logFile = logFile; self.pki = pki
        }

        public func peerURL(_ address: String) -> String { "https://\(address):\(peerPort)" }
    }

    public private(set) var settings: Settings
    public let binary: String
    private let lock = ConditionLock()
    private var pid: pid_t = 0
    private var stopping = false
    private var exited = true

    public init(_ settings: Settings) throws(FleetError) {
        guard let b = Launcher.which("etcd") else { throw .unreachable("etcd: the etcd program is not installed (Debian's etcd-server)") }
        self.settings = settings
        binary = b
    }

    /// Starts as a new member of a running cluster (`NAME=PEER-URL` of
    /// every member, itself included), not one of the first; before `start`.
    public func joining(initialCluster: [String]) {
        settings.initialCluster = initialCluster
        settings.initialState = "existing"
    }

    /// The etcd process now (0 between a death and its restart).
    public var currentPID: pid_t { lock.withLock { exited ? 0 : pid } }

    /// The client of this member (TLS, trusting the fleet's CA).
    public var client: EtcdClient {
        EtcdClient(endpoint: HTTPURL(tls: true, host: "127.0.0.1", port: settings.clientPort), trust: .authorities(settings.pki.caCert))
    }

    /// etcd's argv.
    public var arguments: [String] {
        let s = settings
        let cluster = s.initialCluster ?? s.initialMembers.map { "\($0)=\(s.peerURL($0))" }
        return [
            "--name", s.name,
            "--data-dir", s.dataDir,
            "--listen-client-urls", "https://127.0.0.1:\(s.clientPort)",
            "--advertise-client-urls", "https://127.0.0.1:\(s.clientPort)",
            "--listen-peer-urls", s.peerURL(s.address),
            "--initial-advertise-peer-urls", s.peerURL(s.address),
            "--initial-cluster", cluster.joined(separator: ","),
            "--initial-cluster-state", s.initialState,
            "--initial-cluster-token", s.clusterToken,
            "--cert-file", s.pki.nodeCert, "--key-file", s.pki.nodeKey,
            "--peer-cert-file", s.pki.nodeCert, "--peer-key-file", s.pki.nodeKey,
            "--peer-trusted-ca-file", s.pki.caCert, "--peer-client-cert-auth",
            "--heartbeat-interval", "200", "--election-timeout", "2000",
            "--log-outputs", "stderr",
        ]
    }

    /// Starts etcd and keeps it running (a restart a second after each
    /// exit) until `stop`.
    public func start() throws(FleetError) {
        do { try Files.makeDirectories(settings.dataDir, mode: 0o700) } catch { throw .unreachable("etcd data dir \(settings.dataDir): \(error)") }
        try spawnOnce()
        spawnThread { [self] in supervise() }
    }

    private func spawnOnce() throws(FleetError) {
        let log: FileDescriptor
        do { log = try FileDescriptor.open(settings.logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o600) } catch {
            throw .unreachable("etcd log \(settings.logFile): \(error)")
        }
        defer { log.close() }
        do {
            let p = try Launcher(binary, arguments).spawn(stdout: log, stderr: log)
            lock.withLock { pid = p; exited = false }
        } catch { throw .unreachable("etcd: \(error)") }
    }

    private func supervise() {
        while true {
            let p = lock.withLock { pid }
            let status = Launcher.wait(p)
            let stop = lock.withLock { () -> Bool in exited = true; lock.broadcast(); return stopping }
            if stop { return }
            Log.error("etcd exited (status \(status)); restarting it")
            sleep(1)
            if lock.withLock({ stopping }) { return }
            do { try spawnOnce() } catch {
                Log.error("\(error)")
                return
            }
        }
    }

    /// Waits until the member answers (a read of the cluster's members).
    public func waitReady(timeout: Double) -> Bool {
        let deadline = Deadline.after(timeout)
        let c = client
        while !deadline.hasPassed {
            if (try? c.members()) != nil { return true }
            usleep(200_000)
        }
        return false
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 5 s) and its supervision.
    public func stop() {
        let p = lock.withLock { () -> pid_t in stopping = true; return exited ? 0 : pid }
        guard p > 0 else { return }
        kill(p, SIGTERM)
        let deadline = Deadline.after(5)
        lock.withLock {
            while !exited && !deadline.hasPassed { _ = lock.wait(until: deadline.at) }
        }
        if lock.withLock({ !exited }) { kill(p, SIGKILL) }
    }
}
