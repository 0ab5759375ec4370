import Config
import Fleet
import Panel
import Platform

/// The panel's way to the other nodes of the fleet: owners and nodes from
/// etcd, requests over the node API (`Fleet.send`).
struct NodeRelay: FleetRelay {
    let fleet: Fleet

    var node: String { fleet.node }

    func owner(of vm: String, fresh: Bool) async throws -> String? {
        fresh ? try await fleet.ownerAsync(vm) : try await fleet.cachedOwnerAsync(vm)
    }

    func knownOwner(of vm: String) -> String? { fleet.knownOwner(vm) }

    func otherNodes() async throws -> [(name: String, up: Bool)] {
        try await fleet.recentNodes().filter { $0.name != fleet.node }.map { ($0.name, $0.state == "up") }
    }

    func owners() async throws -> [String: String] { try await fleet.ownersAsync() }

    func roomiest() async throws -> String {
        guard let n = placement(try await fleet.nodesAsync()) else {
            throw RequestError(.unavailable, "no node of the fleet is up")
        }
        return n
    }

    func forward(to node: String, method: String, target: String, contentType: String?, body: [UInt8],
                 user: String) async throws -> Panel.HTTPResponse {
        guard let info = try await fleet.recentNodes().first(where: { $0.name == node }) else { throw FleetError.noSuchNode(node) }
        let a = try await fleet.sendAsync(to: node, address: info.address, method: method, target: target, contentType: contentType,
                                          body: body, user: user)
        var headers = a.headers
        if let ct = a.contentType { headers.append(("Content-Type", ct)) }
        return Panel.HTTPResponse(status: a.status, headers: headers, body: .bytes(a.body))
    }

    func openWebSocket(to node: String, target: String, headers: [(String, String)], user: String) async throws -> RelayedSocket {
        guard let info = try await fleet.recentNodes().first(where: { $0.name == node }) else { throw FleetError.noSuchNode(node) }
        switch try await fleet.openStreamAsync(to: node, address: info.address, target: target, headers: headers, user: user) {
        case .switched(let stream, let h, let early):
            return .switched(stream: stream, headers: h, early: early)
        case .answered(let a):
            var headers = a.headers
            if let ct = a.contentType { headers.append(("Content-Type", ct)) }
            return .answered(Panel.HTTPResponse(status: a.status, headers: headers, body: .bytes(a.body)))
        }
    }

    func verify(_ credential: String, method: String, target: String) -> String? {
        fleet.verify(credential, method: method, target: target)
    }
}

extension VMManagerBackend {
    var fleetRelay: (any FleetRelay)? { fleet.map { NodeRelay(fleet: $0) } }
}
