#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Testing
@testable import Panel

final class FakeClock: @unchecked Sendable {
    private let lock = Lock()
    private var t: Double
    init(_ t: Double = 1_000_000) { self.t = t }
    var now: Double { lock.withLock { t } }
    func advance(_ s: Double) { lock.withLock { t += s } }
}

@Suite struct AuthTests {
    // From Python's crypt module (libxcrypt), independent of this code.
    static let sha512 = "$6$saltsaltsalt$Cy2drr8kDRji6smvDcT28wkqtq0R0VzVL5CkrjPQCITc5d/31j94knt9rGTcVSyjLXfjsiIsBh5ee8qR/3QDx1"
    static let sha512Rounds = "$6$rounds=5000$abcdefgh$M/eYsB4rVXAm3ZNc88J.UD9rCKAT6FB1rahiwJCHtEndQNORCub5qhjxn50qbqVVthkM.9HpEwtf0t.iV9uH0/"
    static let yescrypt = "$y$j9T$F5Jx5fExrKuPp53xLKQ..0$EmG0hUVUAjciZ717TvJCuCV7T8wtrFFQ.ldWCNQkk./"

    @Test func cryptVerifiesKnownHashes() {
        #expect(PasswordHash.verify("correct horse", hash: AuthTests.sha512))
        #expect(!PasswordHash.verify("correct horsE", hash: AuthTests.sha512))
        #expect(PasswordHash.verify("hunter2", hash: AuthTests.sha512Rounds))
        #expect(!PasswordHash.verify("hunter3", hash: AuthTests.sha512Rounds))
        #expect(PasswordHash.verify("correct horse", hash: AuthTests.yescrypt))
        #expect(!PasswordHash.verify("", hash: AuthTests.yescrypt))
    }

    @Test func malformedHashesNeverMatch() {
        for h in ["", "*", "!", "plain", "$6$", "$99$x$y", "$y$", String(repeating: "$", count: 300)] {
            #expect(!PasswordHash.verify("", hash: h), "\(h)")
            #expect(!PasswordHash.verify("plain", hash: h), "\(h)")
        }
        #expect(!PasswordHash.isSupported("plain"))
        #expect(PasswordHash.isSupported(AuthTests.yescrypt))
    }

    @Test func makeProducesVerifiableSaltedHashes() throws {
        let a = try PasswordHash.make("s3cret")
        let b = try PasswordHash.make("s3cret")
        #expect(a.hasPrefix("$6$") && a != b)
        #expect(PasswordHash.verify("s3cret", hash: a) && !PasswordHash.verify("s3cre", hash: a))
        let y = try PasswordHash.make("s3cret", prefix: "$y$")
        #expect(y.hasPrefix("$y$") && PasswordHash.verify("s3cret", hash: y))
    }

    @Test func rateLimiterWithFakeClock() {
        let clock = FakeClock()
        let r = RateLimiter(maxFailures: 5, window: 60, clock: { clock.now })
        for _ in 0..<4 { r.recordFailure("ip:1"); clock.advance(1) }
        #expect(r.retryAfter("ip:1") == nil)
        r.recordFailure("ip:1")
        // The oldest failure was 4 s ago: 56 s to wait.
        #expect(r.retryAfter("ip:1") == 56)
        #expect(r.retryAfter("ip:2") == nil)
        clock.advance(55)
        #expect(r.retryAfter("ip:1") == 1)
        clock.advance(1.5)
        #expect(r.retryAfter("ip:1") == nil)
        r.recordFailure("user:x"); r.reset("user:x")
        #expect(r.retryAfter("user:x") == nil)
    }

    @Test func sessionsExpireIdleAndAbsolute() {
        let clock = FakeClock()
        let store = SessionStore(idleTimeout: 100, absoluteTimeout: 250, clock: { clock.now })
        let s = store.create(user: "admin")
        #expect(s.token.utf8.count == 64 && s.csrf.utf8.count == 32 && s.token != s.csrf)
        clock.advance(90)
        #expect(store.lookup(s.token)?.user == "admin")   // refreshes idle
        clock.advance(90)
        #expect(store.lookup(s.token) != nil)
        clock.advance(90)                                   // 270 > absolute 250
        #expect(store.lookup(s.token) == nil)
        let t = store.create(user: "admin")
        clock.advance(101)
        #expect(store.lookup(t.token) == nil)
        #expect(store.lookup("nonsense") == nil)
    }

    @Test func sessionsPersistAcrossRestarts() {
        let dir = makeTempDir("sess")
        let a = SessionStore(persistPath: dir + "/sessions")
        let s = a.create(user: "admin")
        let b = SessionStore(persistPath: dir + "/sessions")
        #expect(b.lookup(s.token)?.csrf == s.csrf)
        // Only digests of tokens reach the disk, 0600.
        let text = (try? Files.readString(dir + "/sessions")) ?? ""
        #expect(!text.contains(s.token) && text.contains(SessionStore.key(s.token)))
        var st = stat()
        stat(dir + "/sessions", &st)
        #expect(st.st_mode & 0o777 == 0o600)
        b.remove(s.token)
        #expect(SessionStore(persistPath: dir + "/sessions").lookup(s.token) == nil)
    }

    func head(_ method: String, _ path: String, headers: [String: String] = [:], cookies: [String: String] = [:],
              query: [String: String] = [:]) -> RequestHead {
        RequestHead(method: method, path: path, headers: headers, query: query, cookies: cookies)
    }

    @Test func csrfRules() {
        let store = SessionStore()
        let s = store.create(user: "admin")
        let cookie = [AuthPolicy.cookieName: s.token]
        func decide(_ h: RequestHead, _ r: Route) -> AuthDecision { AuthPolicy.authorize(h, route: r, sessions: store) }

        // Cookie + GET: fine. Cookie + POST without/with a wrong token: 403. With the token: fine.
        guard case .allowed(.cookie(let got)) = decide(head("GET", "/api/v1/vms", cookies: cookie), .listVMs) else {
            Issue.record("cookie GET refused"); return
        }
        #expect(got.user == "admin")
        #expect(decide(head("POST", "/api/v1/vms/x/start", cookies: cookie), .vmAction("x", .start))
                == .denied(status: 403, message: "missing or wrong X-CSRF-Token header"))
        #expect(decide(head("DELETE", "/api/v1/vms/x", headers: ["X-CSRF-Token": "nope"], cookies: cookie), .deleteVM("x"))
                == .denied(status: 403, message: "missing or wrong X-CSRF-Token header"))
        if case .denied = decide(head("PUT", "/api/v1/vms/x", headers: ["X-CSRF-Token": s.csrf], cookies: cookie), .updateVM("x")) {
            Issue.record("valid CSRF token refused")
        }
        // Bearer needs no CSRF token.
        if case .denied = decide(head("POST", "/api/v1/vms", headers: ["Authorization": "Bearer \(s.token)"]), .createVM) {
            Issue.record("bearer refused")
        }
        // Nothing: 401; a bad bearer: 401; public routes pass.
        #expect(decide(head("GET", "/api/v1/vms"), .listVMs) == .denied(status: 401, message: "authentication required"))
        #expect(decide(head("GET", "/metrics", headers: ["Authorization": "Bearer x"]), .metrics)
                == .denied(status: 401, message: "invalid or expired token"))
        #expect(decide(head("GET", "/api/v1/health"), .health) == .allowed(nil))
        // WebSocket: ?token= works; cookie needs a matching Origin.
        if case .denied = decide(head("GET", "/api/v1/vms/x/console", query: ["token": s.token]), .console("x")) {
            Issue.record("query token refused")
        }
        #expect(decide(head("GET", "/api/v1/vms/x/console", headers: ["Origin": "https://evil.example", "Host": "box:8443"], cookies: cookie), .console("x"))
                == .denied(status: 403, message: "cross-origin WebSocket refused"))
        if case .denied = decide(head("GET", "/api/v1/vms/x/console", headers: ["Origin": "https://box:8443", "Host": "box:8443"], cookies: cookie), .console("x")) {
            Issue.record("same-origin WebSocket refused")
        }
        // ?token= is not accepted elsewhere.
        #expect(decide(head("GET", "/api/v1/vms", query: ["token": s.token]), .listVMs) == .denied(status: 401, message: "authentication required"))
    }
}
