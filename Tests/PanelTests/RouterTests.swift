import Config
import Testing
@testable import Panel

@Suite struct RouterTests {
    static let table: [(String, String, Route)] = [
        ("GET", "/api/v1/health", .health),
        ("HEAD", "/api/v1/health", .health),
        ("POST", "/api/v1/login", .login),
        ("POST", "/api/v1/logout", .logout),
        ("GET", "/api/v1/session", .session),
        ("GET", "/api/v1/host", .host),
        ("GET", "/api/v1/vms", .listVMs),
        ("POST", "/api/v1/vms", .createVM),
        ("GET", "/api/v1/vms/tiny", .getVM("tiny")),
        ("PUT", "/api/v1/vms/tiny", .updateVM("tiny")),
        ("DELETE", "/api/v1/vms/tiny", .deleteVM("tiny")),
        ("POST", "/api/v1/vms/tiny/start", .vmAction("tiny", .start)),
        ("POST", "/api/v1/vms/tiny/stop", .vmAction("tiny", .stop)),
        ("POST", "/api/v1/vms/tiny/shutdown", .vmAction("tiny", .shutdown)),
        ("POST", "/api/v1/vms/tiny/reboot", .vmAction("tiny", .reboot)),
        ("POST", "/api/v1/vms/tiny/pause", .vmAction("tiny", .pause)),
        ("POST", "/api/v1/vms/tiny/resume", .vmAction("tiny", .resume)),
        ("GET", "/api/v1/vms/tiny/serial", .serial("tiny")),
        ("GET", "/api/v1/vms/tiny/screenshot", .screenshot("tiny")),
        ("GET", "/api/v1/vms/tiny/console", .console("tiny")),
        ("GET", "/api/v1/images", .listImages),
        ("GET", "/api/v1/images/tiny-kernel", .getImage("tiny-kernel")),
        ("PUT", "/api/v1/images/debian-12.iso", .putImage("debian-12.iso")),
        ("DELETE", "/api/v1/images/tiny-kernel", .deleteImage("tiny-kernel")),
        ("GET", "/api/v1/disks", .disks),
        ("POST", "/api/v1/install", .install),
        ("GET", "/api/v1/tasks", .listTasks),
        ("GET", "/api/v1/tasks/abc-123", .task("abc-123")),
        ("GET", "/metrics", .metrics),
        ("GET", "/", .page("index.html")),
        ("GET", "/console", .page("console.html")),
        ("GET", "/app.js", .page("app.js")),
        ("GET", "/css/panel.css", .page("css/panel.css")),
        ("GET", "/novnc/core/rfb.js", .novnc("core/rfb.js")),
    ]

    @Test(arguments: table.indices)
    func routes(_ i: Int) throws {
        let (method, path, want) = RouterTests.table[i]
        #expect(try Router.route(method: method, path: path).get() == want)
    }

    @Test(arguments: [
        ("DELETE", "/api/v1/vms", ["GET", "POST", "HEAD"]),
        ("POST", "/api/v1/health", ["GET", "HEAD"]),
        ("GET", "/api/v1/login", ["POST"]),
        ("GET", "/api/v1/vms/tiny/start", ["POST"]),
        ("POST", "/api/v1/vms/tiny", ["GET", "PUT", "DELETE", "HEAD"]),
        ("PATCH", "/api/v1/images/x", ["GET", "PUT", "DELETE", "HEAD"]),
        ("POST", "/", ["GET", "HEAD"]),
    ])
    func wrongMethodIs405WithAllow(_ method: String, _ path: String, _ allow: [String]) {
        guard case .failure(let e) = Router.route(method: method, path: path) else { Issue.record("routed"); return }
        #expect(e.status == 405)
        #expect(e.allow == allow)
        #expect(e.response.header("Allow") == allow.joined(separator: ", "))
    }

    @Test(arguments: ["/api/v1/nope", "/api/v2/vms", "/api/v1/vms/tiny/explode", "/api/v1/vms/tiny/start/now",
                      "/api/v1", "/api/v1/", "/api/v1/vms/"])
    func unknownIs404(_ path: String) {
        guard case .failure(let e) = Router.route(method: "GET", path: path) else { Issue.record("routed \(path)"); return }
        #expect(e.status == 404 || e.status == 400, "\(path): \(e)")
    }

    /// Hostile names, after percent-decoding as the server applies it.
    @Test(arguments: [
        "/api/v1/vms/../x", "/api/v1/vms/a,b", "/api/v1/vms/" + String(repeating: "a", count: 80),
        "/api/v1/vms/%2e%2e%2fx", "/api/v1/vms/%2e%2e", "/api/v1/vms/Tiny", "/api/v1/vms/-x",
        "/api/v1/vms/a%00b", "/api/v1/vms/a b/start", "/api/v1/vms/..%2f..%2fetc/start",
        "/api/v1/images/..", "/api/v1/images/../etc/passwd", "/api/v1/images/a,b", "/api/v1/images/-drive",
        "/api/v1/images/%2e%2e%2fshadow", "/api/v1/images/x..y", "/api/v1/images/" + String(repeating: "i", count: 200),
        "/api/v1/images/a%2Cfile=%2Fetc%2Fpasswd", "/api/v1/tasks/..", "/api/v1/tasks/..%2F..", "/api/v1/images/a%2Fb",
    ])
    func hostileNamesAre400(_ raw: String) {
        let path = percentDecode(raw)
        for method in ["GET", "PUT", "DELETE", "POST"] {
            guard case .failure(let e) = Router.route(method: method, path: path) else {
                Issue.record("\(method) \(raw) was routed"); continue
            }
            #expect(e.status == 400, "\(method) \(raw) → \(e.status) \(e.message)")
            #expect(!e.message.isEmpty)
        }
    }

    @Test func vmNameMessageIsClear() {
        guard case .failure(let e) = Router.route(method: "GET", path: "/api/v1/vms/a,b") else { Issue.record("routed"); return }
        #expect(e.message == "VM name 'a,b' may contain only a-z, 0-9 and '-'")
    }

    @Test(arguments: ["/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/.git/config", "/novnc/../../etc/passwd",
                      "/css/../../x", "/a\\b", "/.env"])
    func staticTraversalRefused(_ raw: String) {
        guard case .failure(let e) = Router.route(method: "GET", path: percentDecode(raw)) else {
            Issue.record("\(raw) was routed"); return
        }
        #expect(e.status == 400)
    }

    @Test func longPathIs414() {
        guard case .failure(let e) = Router.route(method: "GET", path: "/" + String(repeating: "a", count: 5000)) else { return }
        #expect(e.status == 414)
    }

    @Test func publicRoutes() {
        #expect(Route.health.isPublic && Route.login.isPublic && Route.page("x").isPublic)
        #expect(!Route.listVMs.isPublic && !Route.metrics.isPublic && !Route.console("x").isPublic && !Route.session.isPublic)
    }
}
