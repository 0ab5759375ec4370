import Testing
@testable import Panel

@Suite struct NodeRouteTests {
    @Test func nodesRoutes() throws {
        #expect(try Router.route(method: "GET", path: "/api/v1/nodes").get() == .nodes)
        #expect(try Router.route(method: "DELETE", path: "/api/v1/nodes/node3").get() == .deleteNode("node3"))
        #expect(Route.deleteNode("node3").label == "DELETE /api/v1/nodes/{name}")
        // a node joins by POST (node to node only: the API refuses it without the fleet's node credential)
        #expect(try Router.route(method: "POST", path: "/api/v1/nodes").get() == .joinNode)
        guard case .failure(let e) = Router.route(method: "PUT", path: "/api/v1/nodes") else { Issue.record("PUT accepted"); return }
        #expect(e.status == 405)
        guard case .failure(let bad) = Router.route(method: "DELETE", path: "/api/v1/nodes/..") else { Issue.record("'..' accepted"); return }
        #expect(bad.status == 400)
        guard case .failure(let get) = Router.route(method: "GET", path: "/api/v1/nodes/node3") else { Issue.record("GET accepted"); return }
        #expect(get.status == 405)
    }
}
