import Synchronization
import Testing
import Config
@testable import Panel

/// A fleet as the panel sees it, in memory: etcd's owners, what this node
/// remembers, and the other nodes' answers (a node answers for a VM only
/// while etcd says it owns it, else 421).
final class FakeRelay: FleetRelay, @unchecked Sendable {
    let node = "node1"
    let etcd = Mutex<[String: String]>([:])
    let remembered = Mutex<[String: String]>([:])
    let down = Mutex<Set<String>>([])
    /// (node, method, target) of each forwarded request.
    let sent = Mutex<[String]>([])

    func owner(of vm: String, fresh: Bool) async throws -> String? {
        if !fresh, let o = remembered.withLock({ $0[vm] }) { return o }
        let o = etcd.withLock { $0[vm] }
        remembered.withLock { $0[vm] = o }
        return o
    }
    func knownOwner(of vm: String) -> String? { remembered.withLock { $0[vm] } }
    func otherNodes() async throws -> [(name: String, up: Bool)] {
        let d = down.withLock { $0 }
        return ["node2", "node3"].map { ($0, !d.contains($0)) }
    }
    func owners() async throws -> [String: String] { etcd.withLock { $0 } }
    func roomiest() async throws -> String { "node2" }
    func forward(to node: String, method: String, target: String, contentType: String?, body: [UInt8],
                 user: String) async throws -> HTTPResponse {
        sent.withLock { $0.append("\(node) \(method) \(target)") }
        guard etcd.withLock({ $0[target.split(separator: "/").dropFirst(3).first.map(String.init) ?? ""] }) == node else {
            return .error(notOwnerStatus, "not mine")
        }
        return .json(.object(["name": .string("vm"), "state": .string("running"), "answered_by": .string(node)]))
    }
    func verify(_ credential: String, method: String, target: String) -> String? { nil }
    func openWebSocket(to node: String, target: String, headers: [(String, String)], user: String) async throws -> RelayedSocket {
        throw RequestError(.unavailable, "no consoles here")
    }
}

@Suite struct FleetOwnerCacheTests {
    func api() -> PanelAPI {
        PanelAPI(backend: FakeBackend(dir: "/tmp"), users: [], tls: false, version: "test", webRoot: "/nonexistent")
    }

    func get(_ api: PanelAPI, _ relay: FakeRelay, _ vm: String) async -> (Int, JSONValue?) {
        let head = RequestHead(method: "GET", path: "/api/v1/vms/\(vm)")
        let local = Plan.respond(.json(.object(["name": .string(vm), "state": .string("stopped")])))
        let r = await PanelAPI.runLocal(api.fleetPlan(relay, vm: vm, route: .getVM(vm), head, user: "admin", local: local), [])
        return (r.status, try? JSONValue.parse(r.bodyBytes))
    }

    @Test func aRememberedOwnerIsUsedWithoutEtcdAndAMovedVMIsFollowed() async {
        let relay = FakeRelay()
        let api = api()
        relay.etcd.withLock { $0["vm"] = "node2" }
        var (st, v) = await get(api, relay, "vm")
        #expect(st == 200 && v?["answered_by"]?.stringValue == "node2" && v?["node"]?.stringValue == "node2")
        // the VM moves to node3: node1 still remembers node2, which answers 421; node1 asks etcd again, once
        relay.etcd.withLock { $0["vm"] = "node3" }
        (st, v) = await get(api, relay, "vm")
        #expect(st == 200 && v?["answered_by"]?.stringValue == "node3" && v?["node"]?.stringValue == "node3")
        #expect(relay.sent.withLock { $0 } == ["node2 GET /api/v1/vms/vm", "node2 GET /api/v1/vms/vm", "node3 GET /api/v1/vms/vm"])
        #expect(relay.knownOwner(of: "vm") == "node3")
        // moved here: answered locally
        relay.etcd.withLock { $0["vm"] = "node1" }
        (st, v) = await get(api, relay, "vm")
        #expect(st == 200 && v?["state"]?.stringValue == "stopped" && v?["node"]?.stringValue == "node1")
    }

    @Test func aRememberedOwnerThatIsDownIsCheckedWithEtcd() async {
        let relay = FakeRelay()
        let api = api()
        relay.etcd.withLock { $0["vm"] = "node3" }
        relay.remembered.withLock { $0["vm"] = "node2" }
        relay.down.withLock { $0 = ["node2"] }
        var (st, v) = await get(api, relay, "vm")
        #expect(st == 200 && v?["answered_by"]?.stringValue == "node3")
        // etcd's owner down: the VM is unknown, never answered elsewhere
        relay.down.withLock { $0 = ["node3"] }
        (st, v) = await get(api, relay, "vm")
        #expect(st == 200 && v?["state"]?.stringValue == "unknown" && v?["node"]?.stringValue == "node3")
    }

    @Test func aForwardedRequestForAVMThisNodeDoesNotOwnIsMisdirected() async {
        let relay = FakeRelay()
        let api = api()
        relay.etcd.withLock { $0["vm"] = "node2" }
        let r = await PanelAPI.runLocal(api.ownerChecked(relay, vm: "vm", .run { .json(.object([:])) }), [])
        #expect(r.status == notOwnerStatus)
        relay.etcd.withLock { $0["vm"] = "node1" }
        let ok = await PanelAPI.runLocal(api.ownerChecked(relay, vm: "vm", .run { .json(.object([:])) }), [])
        #expect(ok.status == 200)
    }
}
