import Config
import Platform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A node of the fleet as `GET /api/v1/nodes` shows it.
public struct NodeInfo: Sendable, Equatable {
    public var name: String
    public var address: String
    /// "up" while its lease is renewed, "down" once it has expired.
    public var state: String
    public var cpus: Int
    /// MiB.
    public var memory: Int
    /// MiB available now (as of its last report).
    public var memoryFree: Int
    /// How many VMs it holds.
    public var vms: Int

    public init(name: String, address: String, state: String, cpus: Int, memory: Int, memoryFree: Int, vms: Int) {
        self.name = name; self.address = address; self.state = state; self.cpus = cpus
        self.memory = memory; self.memoryFree = memoryFree; self.vms = vms
    }

    public var json: JSONValue {
        .object(["name": .string(name), "address": .string(address), "state": .string(state), "cpus": .int(cpus),
                 "memory": .int(memory), "memory_free": .int(memoryFree), "vms": .int(vms)])
    }

    /// From a node's record in etcd; nil when it is not one.
    public init?(record: [UInt8], state: String) {
        guard let v = try? JSONValue.parse(record), let name = v["name"]?.stringValue, Names.checkNode(name) == nil,
              let address = v["address"]?.stringValue else { return nil }
        self.init(name: name, address: address, state: state, cpus: v["cpus"]?.intValue ?? 0, memory: v["memory"]?.intValue ?? 0,
                  memoryFree: v["memory_free"]?.intValue ?? 0, vms: v["vms"]?.intValue ?? 0)
    }
}

/// What a node reports of itself at each heartbeat.
public struct NodeCapacity: Sendable, Equatable {
    public var cpus: Int
    public var memory: Int
    public var memoryFree: Int
    public var vms: Int
    public init(cpus: Int, memory: Int, memoryFree: Int, vms: Int) {
        self.cpus = cpus; self.memory = memory; self.memoryFree = memoryFree; self.vms = vms
    }
}

/// This node's membership of the fleet: its etcd member, its record
/// (`/cloudbios/FLEET/nodes/NAME`, kept after it goes down, so the others
/// show it `down`) and its liveness key (`/cloudbios/FLEET/alive/NAME`,
/// under a lease the heartbeat renews: when the node stops, the lease
/// expires within `leaseTTL` seconds and the key goes with it).
public final class Fleet: @unchecked Sendable {
    public let cluster: ClusterConfig
    public let node: String
    public let address: String
    public let member: EtcdMember
    public let etcd: EtcdClient
    /// Seconds a node's liveness outlives its last heartbeat.
    public let leaseTTL: Int
    public let heartbeat: Double
    private let capacity: @Sendable () async -> NodeCapacity
    let lock = ConditionLock()
    var lease: Int64 = 0
    private var loop: Task<Void, Never>?
    /// Held through each heartbeat's etcd writes; `leave` takes it to
    /// know none is under way, and no heartbeat writes after it.
    let renewing = ConditionLock()
    /// Set once this node left the fleet (`leave`).
    var left = false
    /// The last `nodes()` read and when (see `recentNodes`).
    let nodeCache = Mutex<(at: Double, nodes: [NodeInfo])?>(nil)
    /// Connections to the other nodes' APIs, kept open between requests.
    let nodePool: HTTPPool
    /// Each VM's owner as this node last learnt it (see `knownOwner`).
    let ownerCache = Mutex<[String: String]>([:])

    /// The fleet of `cluster` as this node (`node` at `address`), its files
    /// under `directory` (the state dir's fleet/: tls/, etcd/, etcd.log).
    public init(cluster: ClusterConfig, node: String, address: String, directory: String, leaseTTL: Int = 10,
                ports: (client: Int, peer: Int) = (2379, 2380), capacity: @escaping @Sendable () async -> NodeCapacity) throws(FleetError) {
        self.cluster = cluster
        self.node = node
        self.address = address
        self.leaseTTL = leaseTTL
        heartbeat = Double(leaseTTL) / 4
        self.capacity = capacity
        let pki = FleetPKI(directory: directory + "/tls")
        try pki.make(token: cluster.token, fleet: cluster.name, node: node, addresses: [address])
        nodePool = HTTPPool(client: HTTPClient(trust: .authorities(pki.caCert), timeout: 30, userAgent: "cloudbios-fleet"))
        // the initial cluster token names the fleet and its secret, never the secret itself
        let tag = FleetPKI.secret(token: cluster.token, fleet: cluster.name, purpose: "etcd cluster")
        var settings = EtcdMember.Settings(
            name: address, address: address, initialMembers: cluster.members,
            clusterToken: cluster.name + "-" + tag.prefix(8).map { String($0, radix: 16) }.joined(),
            dataDir: directory + "/etcd", logFile: directory + "/etcd.log", pki: pki)
        settings.clientPort = ports.client
        settings.peerPort = ports.peer
        member = try EtcdMember(settings)
        etcd = member.client
    }

    var prefix: String { "/cloudbios/\(cluster.name)/" }
    func nodeKey(_ name: String) -> String { prefix + "nodes/" + name }
    func aliveKey(_ name: String) -> String { prefix + "alive/" + name }

    /// Starts etcd and the heartbeat (which registers this node once the
    /// fleet has a quorum, and keeps it registered).
    public func start() throws(FleetError) {
        if mustJoin { try join() }
        try member.start()
        loop = Task.detached { [self] in
            while !Task.isCancelled {
                await beat()
                try? await Task.sleep(nanoseconds: UInt64(heartbeat * 1e9))
            }
        }
    }

    /// One heartbeat: renew the lease (or take a new one, writing the
    /// liveness key under it) and write the record with the capacity now.
    func beat() async {
        let cap = await capacity()
        let record = JSONValue.object(["name": .string(node), "address": .string(address), "cpus": .int(cap.cpus),
                                       "memory": .int(cap.memory), "memory_free": .int(cap.memoryFree), "vms": .int(cap.vms)])
        do throws(FleetError) {
            try await offThread { [self] () throws(FleetError) in try renew(record) }
        } catch {
            Log.warning("fleet \(cluster.name): heartbeat: \(error)")
        }
    }

    private func renew(_ record: JSONValue) throws(FleetError) {
        renewing.lock()
        defer { renewing.unlock() }
        if left { return }
        var id = lock.withLock { lease }
        if id != 0 {
            // an expired lease renews to 0 s, or is no longer found
            let left: Int
            do throws(FleetError) { left = try etcd.keepAlive(id) } catch {
                guard case .etcd(_, let why) = error, why.contains("lease not found") else { throw error }
                left = 0
            }
            if left <= 0 { id = 0 }
        }
        if id == 0 {
            id = try etcd.grantLease(ttl: leaseTTL)
            try etcd.put(aliveKey(node), Array("up".utf8), lease: id)
            Log.info("fleet \(cluster.name): node \(node) is up (lease \(id))")
        }
        lock.withLock { lease = id }
        try etcd.put(nodeKey(node), record.bytes)
    }

    /// Every node of the fleet, by name, up or down.
    public func nodes() throws(FleetError) -> [NodeInfo] {
        let alive = Set(try etcd.list(prefix: prefix + "alive/").map { String($0.key.dropFirst(prefix.count + 6)) })
        return try etcd.list(prefix: prefix + "nodes/").compactMap { kv in
            let name = String(kv.key.dropFirst(prefix.count + 6))
            return NodeInfo(record: kv.value, state: alive.contains(name) ? "up" : "down")
        }
    }

    /// Removes a node that is down from the fleet: its etcd member (so the
    /// quorum counts only the nodes left) and its record. A node that is up
    /// is refused: it would go on as a member.
    public func remove(_ name: String) throws(FleetError) {
        guard let kv = try etcd.get(nodeKey(name)), let info = NodeInfo(record: kv.value, state: "down") else { throw .noSuchNode(name) }
        if try etcd.get(aliveKey(name)) != nil {
            throw .conflict("node '\(name)' is up: stop it before removing it from the fleet")
        }
        let peer = member.settings.peerURL(info.address)
        if let m = try etcd.members().first(where: { $0.peerURLs.contains(peer) }) {
            try etcd.removeMember(m.id)
            Log.info("fleet \(cluster.name): etcd member \(m.name) (\(peer)) removed")
        }
        // the record goes only if nobody brought the node back meanwhile
        _ = try etcd.txn([.modRevision(nodeKey(name), kv.modRevision), .absent(aliveKey(name))], success: [.delete(nodeKey(name))])
        Log.info("fleet \(cluster.name): node \(name) removed")
    }

    public func removeAsync(_ name: String) async throws(FleetError) {
        try await offThread { [self] () throws(FleetError) in try remove(name) }
    }

    /// `nodes()` on a thread of its own (etcd calls block).
    public func nodesAsync() async throws(FleetError) -> [NodeInfo] {
        try await offThread { [self] () throws(FleetError) in try nodes() }
    }

    /// Stops the heartbeat, ends the lease (the others see this node down
    /// at once) and stops etcd.
    public func stop() {
        loop?.cancel()
        let id = lock.withLock { let id = lease; lease = 0; return id }
        if id != 0 { try? etcd.revoke(id) }
        member.stop()
    }

    /// This host's first global IPv4 address (the default `address`).
    public static func defaultAddress() -> String? {
        for a in NetInterfaces.addresses() where !a.v6 {
            let ip = String(a.cidr.prefix { $0 != "/" })
            if !ip.hasPrefix("127.") && !ip.hasPrefix("169.254.") { return ip }
        }
        return nil
    }
}

/// Runs a blocking call on a thread of its own, so that waiting for etcd
/// never holds one of the few threads async code runs on.
func offThread<T: Sendable>(_ body: @escaping @Sendable () throws(FleetError) -> T) async throws(FleetError) -> T {
    let r: Result<T, FleetError> = await withCheckedContinuation { k in
        spawnThread {
            do throws(FleetError) { k.resume(returning: .success(try body())) } catch { k.resume(returning: .failure(error)) }
        }
    }
    return try r.get()
}
