#if canImport(Glibc)
import Glibc
#endif
import Config

/// How the API reaches the rest of a fleet: which node owns a VM, the
/// other nodes' answers, and the node-to-node credential (a header only a
/// node holding the cluster token can make). The panel decides what goes
/// where; the relay moves the bytes.
public protocol FleetRelay: Sendable {
    /// This node's name in the fleet.
    var node: String { get }
    /// The node owning the VM (this one's name included), nil when no node
    /// does: as this node last learnt it, or, when `fresh` or it knows none,
    /// as etcd says now.
    func owner(of vm: String, fresh: Bool) async throws -> String?
    /// The owner this node last learnt, without asking etcd.
    func knownOwner(of vm: String) -> String?
    /// The other nodes, by name, and whether each is up.
    func otherNodes() async throws -> [(name: String, up: Bool)]
    /// The VMs owned by the fleet's nodes, by VM name (what etcd says).
    func owners() async throws -> [String: String]
    /// The node with the most free memory among those that are up.
    func roomiest() async throws -> String
    /// Sends the request to `node` as `user`; its answer (a node that
    /// cannot be reached is a `RequestError`).
    func forward(to node: String, method: String, target: String, contentType: String?, body: [UInt8],
                 user: String) async throws -> HTTPResponse
    /// The user a node-to-node credential (`X-CloudBIOS-Fleet`) speaks for,
    /// nil when it is not valid for this request.
    func verify(_ credential: String, method: String, target: String) -> String?
    /// Opens `user`'s WebSocket request (`GET target` with its `Upgrade`
    /// headers) on `node`: its connection once it switched protocols, or
    /// its answer.
    func openWebSocket(to node: String, target: String, headers: [(String, String)], user: String) async throws -> RelayedSocket
}

/// The header a node sends a request it forwards with.
public let fleetCredentialHeader = "x-cloudbios-fleet"

/// A node's answer to a forwarded request for a VM it does not own (421
/// Misdirected Request): the VM moved on since the forwarding node learnt
/// its owner.
public let notOwnerStatus = 421

extension FleetRelay {
    /// The node owning the VM when it is another one; nil when this node
    /// owns it or no node does (then the request is answered here).
    public func remoteOwner(of vm: String, fresh: Bool = true) async throws -> String? {
        guard let owner = try await owner(of: vm, fresh: fresh), owner != node else { return nil }
        return owner
    }
}

extension PanelBackend {
    public var fleetRelay: (any FleetRelay)? { nil }
}

extension PanelAPI {
    /// The request target (path percent-encoded, then the query) as the
    /// owner node gets it.
    static func target(_ head: RequestHead) -> String {
        var out = ""
        for b in head.path.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.append(Character(Unicode.Scalar(b)))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        let q = head.query.sorted { $0.key < $1.key }.map { k, v in
            PanelAPI.queryEscape(k) + "=" + PanelAPI.queryEscape(v)
        }
        return q.isEmpty ? out : out + "?" + q.joined(separator: "&")
    }

    static func queryEscape(_ s: String) -> String {
        var out = ""
        let hex = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(b)))
            default:
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// The VM a route acts on, when it is one that follows the VM to its
    /// node (the WebSocket consoles follow it through `fleetWebSocket`).
    static func vmOf(_ route: Route) -> String? {
        switch route {
        case .getVM(let n), .updateVM(let n), .deleteVM(let n), .vmAction(let n, _), .serial(let n), .screenshot(let n), .cdrom(let n),
             .migrate(let n), .backupVM(let n), .listSnapshots(let n), .takeSnapshot(let n), .revertSnapshot(let n, _),
             .deleteSnapshot(let n, _), .cloneVM(let n):
            return n
        default:
            return nil
        }
    }

    /// A request of a user to a VM of the fleet: answered by the node
    /// owning the VM (forwarded there), else here as `local` says.
    func fleetPlan(_ relay: any FleetRelay, vm: String, route: Route, _ head: RequestHead, user: String, local: Plan) -> Plan {
        let limit = PanelAPI.jsonLimit
        return .body(limit: limit) { body in
            await PanelAPI.guarded {
                // the owner as last learnt; when that node says the VM is no longer its own, is down or cannot be
                // reached, etcd is asked again, and the request goes on only to another owner than the one tried
                var tried: (owner: String, failure: any Error)? = nil
                for fresh in [false, true] {
                    guard let owner = try await relay.remoteOwner(of: vm, fresh: fresh) else { break }
                    if let tried, tried.owner == owner { throw tried.failure }
                    let nodes = try await relay.otherNodes()
                    if nodes.first(where: { $0.name == owner })?.up == false {
                        // (nothing was sent: etcd's word decides)
                        if !fresh { continue }
                        // a node that is down holds its VMs: shown unknown, never started elsewhere
                        if case .getVM = route {
                            return .json(.object(["name": .string(vm), "node": .string(owner), "state": .string("unknown")]))
                        }
                        throw RequestError(.unavailable, "VM '\(vm)' is on node '\(owner)', which is down")
                    }
                    let r: HTTPResponse
                    do {
                        r = try await relay.forward(to: owner, method: head.method, target: PanelAPI.target(head),
                                                    contentType: head.header("content-type"), body: body, user: user)
                    } catch {
                        if fresh { throw error }
                        tried = (owner, error)
                        continue
                    }
                    if r.status == notOwnerStatus {
                        if fresh { throw RequestError(.unavailable, "VM '\(vm)' is moving between nodes: try again") }
                        tried = (owner, RequestError(.unavailable, "VM '\(vm)' is moving between nodes: try again"))
                        continue
                    }
                    return PanelAPI.namingNode(r, route: route, owner)
                }
                return PanelAPI.namingNode(await PanelAPI.runLocal(local, body), route: route, relay.node)
            }
        }
    }

    /// A request another node forwarded for a VM: answered only while this
    /// node owns the VM, else `notOwnerStatus` (the VM moved on; the
    /// forwarding node asks etcd again). Free when this node knows the VM
    /// is its own; an etcd that cannot be asked leaves it answered here.
    func ownerChecked(_ relay: any FleetRelay, vm: String, _ p: Plan) -> Plan {
        if relay.knownOwner(of: vm) == relay.node { return p }
        @Sendable func mine() async -> Bool {
            do { return try await relay.owner(of: vm, fresh: true) == relay.node } catch { return true }
        }
        let misdirected = HTTPResponse.error(notOwnerStatus, "VM '\(Names.clip(vm))' is not node '\(relay.node)''s")
        switch p {
        case .respond, .upload: return p
        case .run(let f): return .run { await mine() ? await f() : misdirected }
        case .now(let f): return .run { await mine() ? f() : misdirected }
        case .body(let limit, let f): return .body(limit: limit) { b in await mine() ? await f(b) : misdirected }
        }
    }

    /// `GET /api/v1/vms` in a fleet: this node's VMs and every other up
    /// node's, each with its `"node"`. A VM defined on several nodes (a
    /// config file's) is shown as its owner has it; one whose owner is
    /// down is shown `unknown` there.
    func fleetList(_ relay: any FleetRelay, user: String) -> Plan {
        let backend = self.backend
        return .run {
            await PanelAPI.guarded {
                var entries: [(node: String, vm: JSONValue)] = await backend.listVMs().map { (relay.node, $0.json) }
                let nodes = try await relay.otherNodes()
                let lists = await withTaskGroup(of: [(node: String, vm: JSONValue)].self) { group in
                    for n in nodes where n.up {
                        group.addTask {
                            guard let r = try? await relay.forward(to: n.name, method: "GET", target: "/api/v1/vms", contentType: nil,
                                                                  body: [], user: user),
                                  r.status == 200, case .array(let items)? = try? JSONValue.parse(r.bodyBytes) else { return [] }
                            return items.map { (n.name, $0) }
                        }
                    }
                    var all: [(node: String, vm: JSONValue)] = []
                    for await l in group { all += l }
                    return all
                }
                entries += lists.sorted { $0.node < $1.node }
                let owners = try await relay.owners()
                let down = Set(nodes.filter { !$0.up }.map(\.name))
                var names: [String] = []
                var byName: [String: [(node: String, vm: JSONValue)]] = [:]
                for e in entries {
                    guard let n = e.vm["name"]?.stringValue else { continue }
                    if byName[n] == nil { names.append(n) }
                    byName[n, default: []].append(e)
                }
                for (vm, node) in owners.sorted(by: { $0.key < $1.key }) where byName[vm] == nil && down.contains(node) {
                    names.append(vm)
                    byName[vm] = []
                }
                return .json(.array(names.map { name in
                    let all = byName[name] ?? []
                    if let owner = owners[name] {
                        if let e = all.first(where: { $0.node == owner }) { return PanelAPI.withNode(e.vm, owner) }
                        if down.contains(owner) {
                            return .object(["name": .string(name), "node": .string(owner), "state": .string("unknown")])
                        }
                    }
                    return PanelAPI.withNode(all[0].vm, all[0].node)
                }))
            }
        }
    }

    /// `GET /api/v1/tasks/{id}` in a fleet: a task of another node (a
    /// forwarded request's) is found there.
    func fleetTask(_ relay: any FleetRelay, _ head: RequestHead, user: String, local: Plan) -> Plan {
        .run {
            let r = await PanelAPI.runLocal(local, [])
            guard r.status == 404 else { return r }
            for n in (try? await relay.otherNodes()) ?? [] where n.up {
                if let a = try? await relay.forward(to: n.name, method: "GET", target: PanelAPI.target(head), contentType: nil, body: [], user: user),
                   a.status == 200 {
                    return a
                }
            }
            return r
        }
    }

    /// `POST /api/v1/vms` in a fleet: `"node"` names where the VM goes
    /// (else the node with the most free memory); created there.
    func fleetCreate(_ relay: any FleetRelay, _ head: RequestHead, user: String, local: @escaping @Sendable ([UInt8]) async -> HTTPResponse) -> Plan {
        .body(limit: PanelAPI.jsonLimit) { body in
            await PanelAPI.guarded {
                let v: JSONValue
                do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(PanelAPI.bodyMessage(error)) }
                guard case .object(var o) = v else { return await local(body) }
                var target: String
                if let n = o["node"] {
                    guard let s = n.stringValue, Names.checkNode(s) == nil else { throw RequestError.badRequest("'node' must be a node name") }
                    target = s
                } else {
                    target = try await relay.roomiest()
                }
                o["node"] = nil
                let rest = JSONValue.object(o).bytes
                if target == relay.node { return await local(rest) }
                guard let n = try await relay.otherNodes().first(where: { $0.name == target }) else {
                    throw RequestError.notFound("no node named '\(Names.clip(target))' in the fleet")
                }
                guard n.up else { throw RequestError(.unavailable, "node '\(target)' is down") }
                return try await relay.forward(to: target, method: "POST", target: "/api/v1/vms", contentType: "application/json",
                                               body: rest, user: user)
            }
        }
    }

    static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in p.count <= 3 && !p.isEmpty && p.allSatisfy(\.isASCII) && (UInt8(p) != nil) }
    }

    func isResponse(_ p: Plan) -> Bool {
        if case .respond = p { return true }
        return false
    }

    /// A VM's JSON as a fleet shows it: with its `"node"`.
    static func namingNode(_ r: HTTPResponse, route: Route, _ node: String) -> HTTPResponse {
        guard case .getVM = route, r.status == 200, let v = try? JSONValue.parse(r.bodyBytes), case .object = v else { return r }
        return .json(withNode(v, node), headers: r.headers.filter { $0.0.lowercased() != "content-type" })
    }

    static func withNode(_ v: JSONValue, _ node: String) -> JSONValue {
        guard case .object(var o) = v else { return v }
        o["node"] = .string(node)
        return .object(o)
    }

    static func runLocal(_ p: Plan, _ body: [UInt8]) async -> HTTPResponse {
        switch p {
        case .respond(let r): return r
        case .run(let f): return await f()
        case .now(let f): return f()
        case .body(let limit, let f): return body.count > limit ? PanelAPI.tooLarge(limit) : await f(body)
        case .upload: return .error(405, "uploads are not forwarded")
        }
    }
}

/// The API as the other nodes of a fleet reach it: the same `PanelAPI` on
/// the node's fleet address, over TLS with its fleet certificate.
public final class FleetListener: @unchecked Sendable {
    private let server: HTTPServer

    /// Serves `api` on `host:port` with this certificate and key (PEM).
    public init(api: PanelAPI, host: String, port: Int, certPEM: String, keyPEM: String) throws {
        let (fd, _, v6) = try PanelServer.listenSocket(host: host, port: port)
        server = HTTPServer(api: api)
        do {
            try server.start(listenFD: fd, ipv6: v6, threads: 2, tls: TLSMaterial(certPEM: certPEM, keyPEM: keyPEM, fingerprint: ""))
        } catch {
            close(fd)
            throw error
        }
    }

    public func stop() { server.stop() }
}

/// `POST /api/v1/cluster/join`'s body, checked: the fleet to join, through
/// which of its nodes, with its token; this node's name and address when
/// not the defaults (the hostname, the first global IPv4 address).
public struct FleetJoinRequest: Sendable, Equatable {
    public var member: String
    public var fleet: String
    public var token: String
    public var node: String?
    public var address: String?

    public init(member: String, fleet: String, token: String, node: String? = nil, address: String? = nil) {
        self.member = member; self.fleet = fleet; self.token = token; self.node = node; self.address = address
    }

    public init(_ o: [String: JSONValue]) throws(RequestError) {
        func text(_ key: String, required: Bool) throws(RequestError) -> String? {
            guard let v = o[key], v != .null else {
                if required { throw .badRequest("'\(key)' is required") }
                return nil
            }
            guard let s = v.stringValue else { throw .badRequest("'\(key)' must be a string") }
            if s.isEmpty && !required { return nil }
            return s
        }
        // (addresses checked as the config file that receives them checks them)
        guard let member = try text("member", required: true), IPv4.isAddress(member) else {
            throw .badRequest("'member' must be the IPv4 address of a node of the fleet")
        }
        let fleet = try text("fleet", required: true)!
        if let e = Names.checkLabel(fleet, "fleet name") { throw .badRequest("'fleet': " + e) }
        let token = try text("token", required: true)!
        guard token.count >= ClusterConfig.minimumTokenLength, token.utf8.count <= 256,
              !token.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw .badRequest("'token' must be the fleet's token: \(ClusterConfig.minimumTokenLength) to 256 printable characters")
        }
        let node = try text("node", required: false)
        if let node, let e = Names.checkNode(node) { throw .badRequest("'node': " + e) }
        let address = try text("address", required: false)
        if let address, !IPv4.isAddress(address) { throw .badRequest("'address' must be an IPv4 address") }
        self.init(member: member, fleet: fleet, token: token, node: node, address: address)
    }
}
