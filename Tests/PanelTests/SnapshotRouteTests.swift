import Config
import Testing
@testable import Panel

/// The snapshot and clone routes, and what they refuse before any backend call.
@Suite struct SnapshotRouteTests {
    @Test(arguments: [
        ("GET", "/api/v1/vms/web/snapshots", Route.listSnapshots("web")),
        ("POST", "/api/v1/vms/web/snapshots", Route.takeSnapshot("web")),
        ("POST", "/api/v1/vms/web/snapshots/s1/revert", Route.revertSnapshot("web", "s1")),
        ("DELETE", "/api/v1/vms/web/snapshots/s1", Route.deleteSnapshot("web", "s1")),
        ("POST", "/api/v1/vms/web/clone", Route.cloneVM("web")),
    ])
    func routes(_ method: String, _ path: String, _ route: Route) throws {
        #expect(try Router.route(method: method, path: path).get() == route)
    }

    @Test(arguments: [
        ("POST", "/api/v1/vms/web/snapshots/1bad/revert", 400),
        ("DELETE", "/api/v1/vms/web/snapshots/..", 400),
        ("POST", "/api/v1/vms/web/snapshots/../etc/revert", 400),
        ("DELETE", "/api/v1/vms/Bad_VM/snapshots/s1", 400),
        ("GET", "/api/v1/vms/web/snapshots/s1", 405),
        ("PUT", "/api/v1/vms/web/snapshots", 405),
        ("GET", "/api/v1/vms/web/clone", 405),
        ("POST", "/api/v1/vms/web/snapshots/s1/undo", 404),
    ])
    func refused(_ method: String, _ path: String, _ status: Int) {
        guard case .failure(let e) = Router.route(method: method, path: path) else {
            Issue.record("\(method) \(path) was routed"); return
        }
        #expect(e.status == status)
    }

    @Test func theTemplateKeyRoundTrips() throws {
        let s = try VMSpec.decode(json: Array(#"{"name": "t", "template": true}"#.utf8))
        #expect(s.template)
        #expect(s.json["template"] == .bool(true))
        #expect(try VMSpec.decode(json: s.json.bytes) == s)
        #expect(VMSpec(name: "x").json["template"] == nil)
        #expect(throws: ConfigErrors.self) { _ = try VMSpec.decode(json: Array(#"{"name": "t", "template": "yes"}"#.utf8)) }
    }
}
