import Config
import Testing
@testable import Panel

/// Random and mutated input never traps and never gets a 5xx.
@Suite struct FuzzTests {
    struct RNG: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 29)
        }
    }

    @Test func randomPathsRouteOrFailCleanly() {
        var rng = RNG(state: 42)
        let alphabet = Array("/api/v1/vmsimagestasksconsoleserial.%2e%2f,-_aZ09 \u{0}\u{7f}é?#&=".unicodeScalars)
        let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "", "G E T"]
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...90, using: &rng)
            var s = String.UnicodeScalarView()
            if Bool.random(using: &rng) { s.append(contentsOf: "/api/v1/".unicodeScalars) }
            for _ in 0..<n { s.append(alphabet.randomElement(using: &rng)!) }
            let path = percentDecode(String(s))
            switch Router.route(method: methods.randomElement(using: &rng)!, path: path) {
            case .success: break
            case .failure(let e): #expect((400..<500).contains(e.status), "\(path) → \(e.status)")
            }
        }
    }

    @Test func randomBodiesAreClientErrors() async throws {
        let dir = makeTempDir("fuzz")
        let api = PanelAPI(backend: FakeBackend(dir: dir), users: [PanelUser(name: "admin", passwordHash: TestServer.hash)],
                           tls: false, version: "t", webRoot: dir)
        let token = api.sessions.create(user: "admin").token
        var rng = RNG(state: 7)
        let seeds = [#"{"name":"a","memory":256,"cpus":1,"disks":[{"size":"1G"}],"kernel":"k","append":"x"}"#,
                     #"{"user":"admin","password":"x"}"#, #"{"dry_run":true,"disk":{"serial":"X*"},"wipe":false}"#]
        let routes: [(String, String)] = [("POST", "/api/v1/vms"), ("PUT", "/api/v1/vms/a"), ("POST", "/api/v1/login"),
                                          ("POST", "/api/v1/install")]
        for i in 0..<1500 {
            var b = Array(seeds[i % seeds.count].utf8)
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let pos = Int.random(in: 0..<max(1, b.count), using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: if !b.isEmpty { b.remove(at: min(pos, b.count - 1)) }
                case 1: b.insert(UInt8.random(in: 0...255, using: &rng), at: min(pos, b.count))
                case 2: if !b.isEmpty { b[min(pos, b.count - 1)] = Array("{}[],:\"0-e.9tfn\\u".utf8).randomElement(using: &rng)! }
                default: b.insert(contentsOf: Array(String(repeating: "[", count: Int.random(in: 1...3000, using: &rng)).utf8), at: min(pos, b.count))
                }
            }
            let (m, p) = routes[i % routes.count]
            let head = RequestHead(method: m, path: p, headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"],
                                   clientIP: "10.0.\(i % 250).\(i % 7)")
            let r = await api.handle(head, body: b)
            #expect(r.status < 500, "\(m) \(p) \(String(decoding: b.prefix(200), as: UTF8.self)) → \(r.status) \(String(decoding: r.bodyBytes, as: UTF8.self))")
        }
    }
}
