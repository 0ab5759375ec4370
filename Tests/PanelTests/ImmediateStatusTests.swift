#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Synchronization
import Testing
@testable import Panel

/// A backend that publishes its VMs' statuses on every change and reads
/// them at once (`ImmediateVMStatus`), as the VM manager does. Its own
/// async reads fail, so an answer that comes from them shows.
final class PublishingBackend: PanelBackend, ImmediateVMStatus {
    let fake: FakeBackend
    private let published = Mutex<[String: VMStatus]>([:])
    init(_ fake: FakeBackend) { self.fake = fake }

    private func publish() async {
        let all = await fake.listVMs()
        published.withLock { p in p = Dictionary(uniqueKeysWithValues: all.map { ($0.spec.name, $0) }) }
    }

    func listVMsNow() -> [VMStatus] { published.withLock { $0 }.values.sorted { $0.spec.name < $1.spec.name } }
    func vmNow(_ name: String) throws -> VMStatus {
        guard let v = published.withLock({ $0[name] }) else { throw RequestError.notFound("no VM named '\(name)'") }
        return v
    }
    func listVMs() async -> [VMStatus] { [] }
    func vm(_ name: String) async throws -> VMStatus { throw RequestError(.failed, "asked the owner") }

    func createVM(_ spec: VMSpec) async throws -> VMStatus { let r = try await fake.createVM(spec); await publish(); return r }
    func updateVM(_ name: String, _ spec: VMSpec) async throws -> VMStatus { let r = try await fake.updateVM(name, spec); await publish(); return r }
    func setCDROM(_ name: String, _ image: String?) async throws -> VMStatus { let r = try await fake.setCDROM(name, image); await publish(); return r }
    func deleteVM(_ name: String) async throws { try await fake.deleteVM(name); await publish() }
    func perform(_ action: VMAction, on name: String) async throws -> VMStatus { let r = try await fake.perform(action, on: name); await publish(); return r }
    func host() async -> HostInfo { await fake.host() }
    func serialLogPath(_ name: String) async throws -> String { try await fake.serialLogPath(name) }
    func screenshot(_ name: String) async throws -> [UInt8] { try await fake.screenshot(name) }
    func vncSocketPath(_ name: String) async throws -> String { try await fake.vncSocketPath(name) }
    func serialSocketPath(_ name: String) async throws -> String { try await fake.serialSocketPath(name) }
    func listImages() async -> [ImageInfo] { await fake.listImages() }
    func beginImageUpload(_ name: String, expectedSize: Int64?) async throws -> any ImageUpload {
        try await fake.beginImageUpload(name, expectedSize: expectedSize)
    }
    func deleteImage(_ name: String) async throws { try await fake.deleteImage(name) }
    func disks() async throws -> JSONValue { try await fake.disks() }
    func startInstall(_ body: JSONValue) async throws -> TaskInfo { try await fake.startInstall(body) }
    func task(_ id: String) async throws -> TaskInfo { try await fake.task(id) }
    func tasks() async -> [TaskInfo] { await fake.tasks() }
    func importVM(image: String, name: String) async throws -> TaskInfo { try await fake.importVM(image: image, name: name) }
    func importImage(_ name: String, url: String, sha256: String?) async throws -> TaskInfo {
        try await fake.importImage(name, url: url, sha256: sha256)
    }
    func metrics() async -> String { await fake.metrics() }
}

/// `GET /api/v1/vms` and `GET /api/v1/vms/{name}` over a backend that reads
/// statuses at once: answered on the HTTP thread from those reads, each
/// change visible to the next request, the same bytes as the async path.
@Suite(.serialized) struct ImmediateStatusTests {
    @Test func statusesAreAnsweredFromTheBackendsImmediateReads() async throws {
        let dir = makeTempDir("now")
        defer { Files.removeTree(dir) }
        let fake = FakeBackend(dir: dir)
        let backend = PublishingBackend(fake)
        var cfg = PanelConfig()
        cfg.listen = "127.0.0.1:0"
        cfg.tls = .off
        cfg.users = [PanelUser(name: "admin", passwordHash: TestServer.hash)]
        let server = try PanelServer(config: cfg, stateDir: dir + "/state", webRoot: dir, backend: backend, version: "t", hostname: "box1")
        try server.start()
        defer { server.stop() }
        let http = TestHTTP(port: server.port)
        let login = try await http.json("POST", "/api/v1/login", #"{"user":"admin","password":"correct horse"}"#)
        let token = try #require(login.json?["token"]?.stringValue, "\(login.status) \(login.text)")
        let auth = ["Authorization": "Bearer \(token)"]

        #expect(try await http.request("GET", "/api/v1/vms", headers: auth).json == .array([]))
        #expect(try await http.json("POST", "/api/v1/vms", #"{"name":"web","memory":512}"#, headers: auth).status == 201)
        let one = try await http.request("GET", "/api/v1/vms/web", headers: auth)
        #expect(one.status == 200)
        #expect(one.json?["memory"]?.intValue == 512 && one.json?["state"]?.stringValue == "stopped")
        #expect(one.headers["content-type"] == "application/json")
        #expect(one.headers["x-content-type-options"] == "nosniff")
        // the same bytes the async path renders
        let expected = HTTPResponse.json(try await fake.vm("web").json).bodyBytes
        #expect(one.body == expected)

        // a change shows in the very next read
        #expect(try await http.request("POST", "/api/v1/vms/web/start", headers: auth).status == 200)
        #expect(try await http.request("GET", "/api/v1/vms/web", headers: auth).json?["state"]?.stringValue == "running")
        #expect(try await http.json("POST", "/api/v1/vms", #"{"name":"db"}"#, headers: auth).status == 201)
        let list = try await http.request("GET", "/api/v1/vms", headers: auth)
        #expect(list.json?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["db", "web"])
        #expect(list.body == HTTPResponse.json(.array(try await fake.listVMs().map(\.json))).bodyBytes)

        // an unknown VM is the backend's not-found, a bad name the router's 400, no token a 401
        let missing = try await http.request("GET", "/api/v1/vms/nope", headers: auth)
        #expect(missing.status == 404 && missing.error == "no VM named 'nope'")
        #expect(try await http.request("GET", "/api/v1/vms/bad..name", headers: auth).status == 400)
        #expect(try await http.request("GET", "/api/v1/vms/web").status == 401)
        // HEAD: the headers of a GET, no body
        let head = try await http.request("HEAD", "/api/v1/vms/web", headers: auth)
        #expect(head.status == 200 && head.body.isEmpty)

        // keep-alive: many reads on one connection (sent at once), each a whole answer
        let answers = try await offPool { () -> Int in
            let fd = try http.connect()
            defer { close(fd) }
            let one = "GET /api/v1/vms/web HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n\r\n"
            guard TestHTTP.send(fd, Array(String(repeating: one, count: 50).utf8)) else { return -1 }
            let marker = Array("HTTP/1.1 200 OK".utf8)
            var got: [UInt8] = []
            var n = 0
            var buf = [UInt8](repeating: 0, count: 65536)
            let deadline = Clock.monotonic() + 20
            while n < 50, Clock.monotonic() < deadline {
                let r = read(fd, &buf, buf.count)
                if r <= 0 { break }
                got += buf[0..<r]
                n = 0
                var i = 0
                while i + marker.count <= got.count {
                    if got[i] == marker[0], Array(got[i..<i + marker.count]) == marker { n += 1; i += marker.count } else { i += 1 }
                }
            }
            return n
        }
        #expect(answers == 50)
    }
}
