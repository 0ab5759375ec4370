#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Testing
@testable import Panel

/// A real server on 127.0.0.1:<free port> in front of the fake backend.
final class TestServer {
    let dir: String
    let backend: FakeBackend
    let server: PanelServer
    let http: TestHTTP
    static let password = "correct horse"
    static let hash = "$6$saltsaltsalt$Cy2drr8kDRji6smvDcT28wkqtq0R0VzVL5CkrjPQCITc5d/31j94knt9rGTcVSyjLXfjsiIsBh5ee8qR/3QDx1"

    init(tls: TLSMode = .off, tag: String = "srv") throws {
        dir = makeTempDir(tag)
        let web = dir + "/web"
        try Files.makeDirectories(web + "/css")
        try Files.writeAtomically(web + "/index.html", "<!doctype html><title>CloudBIOS</title>")
        try Files.writeAtomically(web + "/console.html", "<!doctype html><title>console</title>")
        try Files.writeAtomically(web + "/css/panel.css", "body{}")
        backend = FakeBackend(dir: dir)
        var cfg = PanelConfig()
        cfg.listen = "127.0.0.1:0"
        cfg.tls = tls
        cfg.users = [PanelUser(name: "admin", passwordHash: TestServer.hash)]
        server = try PanelServer(config: cfg, stateDir: dir + "/state", webRoot: web, backend: backend, version: "9.9.9", hostname: "box1")
        try server.start()
        http = TestHTTP(port: server.port)
    }

    deinit {
        server.stop()
        Files.removeTree(dir)
    }

    func login() async throws -> (token: String, csrf: String) {
        let r = try await http.json("POST", "/api/v1/login", #"{"user":"admin","password":"correct horse"}"#)
        guard r.status == 200, let t = r.json?["token"]?.stringValue, let c = r.json?["csrf"]?.stringValue else {
            throw RequestError(.failed, "login failed (\(r.status)): \(r.text)")
        }
        return (t, c)
    }
}

@Suite(.serialized) struct ServerTests {
    @Test func healthIsPublicWithSecurityHeaders() async throws {
        let s = try TestServer()
        #expect(s.server.port > 0 && s.server.url == "http://127.0.0.1:\(s.server.port)")
        let r = try await s.http.request("GET", "/api/v1/health")
        #expect(r.status == 200)
        #expect(r.json == .object(["status": .string("ok"), "version": .string("9.9.9")]))
        #expect(r.headers["content-type"] == "application/json")
        #expect(r.headers["content-security-policy"]?.contains("frame-ancestors 'none'") == true)
        #expect(r.headers["x-content-type-options"] == "nosniff")
        #expect(r.headers["x-frame-options"] == "DENY")
        #expect(r.headers["referrer-policy"] == "no-referrer")
        #expect(r.headers["strict-transport-security"] == nil)
    }

    @Test func everythingElseNeedsAuth() async throws {
        let s = try TestServer()
        for (m, p) in [("GET", "/api/v1/vms"), ("GET", "/metrics"), ("GET", "/api/v1/host"), ("POST", "/api/v1/vms/x/start"),
                       ("GET", "/api/v1/session"), ("DELETE", "/api/v1/images/x"), ("GET", "/api/v1/disks")] {
            let r = try await s.http.request(m, p)
            #expect(r.status == 401, "\(m) \(p)")
            #expect(r.error != nil)
        }
        let bad = try await s.http.request("GET", "/api/v1/vms", headers: ["Authorization": "Bearer " + String(repeating: "0", count: 64)])
        #expect(bad.status == 401)
    }

    @Test func loginSessionLogoutAndCSRF() async throws {
        let s = try TestServer()
        let r = try await s.http.json("POST", "/api/v1/login", #"{"user":"admin","password":"correct horse"}"#)
        #expect(r.status == 200)
        let token = try #require(r.json?["token"]?.stringValue)
        let csrf = try #require(r.json?["csrf"]?.stringValue)
        #expect(r.json?["expires"]?.stringValue?.hasSuffix("Z") == true)
        let cookie = try #require(r.headers["set-cookie"])
        #expect(cookie.hasPrefix("cloudbios_session=\(token);"))
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/") && !cookie.contains("Secure"))

        let sess = try await s.http.request("GET", "/api/v1/session", headers: ["Authorization": "Bearer \(token)"])
        #expect(sess.status == 200 && sess.json?["user"]?.stringValue == "admin" && sess.json?["csrf"]?.stringValue == csrf)

        // Cookie auth: reading is fine, changing needs X-CSRF-Token.
        let c = ["Cookie": "cloudbios_session=\(token)"]
        #expect(try await s.http.request("GET", "/api/v1/vms", headers: c).json == .array([]))
        // A change made through the API shows at once; one made behind it within the cache time.
        let made = try await s.http.json("POST", "/api/v1/vms", #"{"name":"made"}"#, headers: ["Authorization": "Bearer \(token)"])
        #expect(made.status == 201)
        #expect(try await s.http.request("GET", "/api/v1/vms", headers: c).json?.arrayValue?.count == 1)
        await s.backend.addVM("tiny")
        // Within 2 × 0.25 s: a stale list may be served once while it is re-read…
        try await Task.sleep(nanoseconds: 300_000_000)
        _ = try await s.http.request("GET", "/api/v1/vms", headers: c)
        try await Task.sleep(nanoseconds: 50_000_000)
        #expect(try await s.http.request("GET", "/api/v1/vms", headers: c).json?.arrayValue?.count == 2)
        // …and never older than that.
        await s.backend.addVM("tiny2")
        try await Task.sleep(nanoseconds: 550_000_000)
        #expect(try await s.http.request("GET", "/api/v1/vms", headers: c).json?.arrayValue?.count == 3)
        let noToken = try await s.http.request("POST", "/api/v1/vms/tiny/start", headers: c)
        #expect(noToken.status == 403 && noToken.error?.contains("X-CSRF-Token") == true)
        let wrong = try await s.http.request("POST", "/api/v1/vms/tiny/start", headers: c.merging(["X-CSRF-Token": "x"]) { a, _ in a })
        #expect(wrong.status == 403)
        #expect(try await s.http.request("GET", "/api/v1/vms/tiny", headers: c).json?["state"]?.stringValue == "stopped")
        let ok = try await s.http.request("POST", "/api/v1/vms/tiny/start", headers: c.merging(["X-CSRF-Token": csrf]) { a, _ in a })
        #expect(ok.status == 200 && ok.json?["state"]?.stringValue == "running")
        // Bearer needs no CSRF header.
        #expect(try await s.http.request("POST", "/api/v1/vms/tiny/pause", headers: ["Authorization": "Bearer \(token)"]).json?["state"]?.stringValue == "paused")

        let out = try await s.http.request("POST", "/api/v1/logout", headers: ["Authorization": "Bearer \(token)"])
        #expect(out.status == 204 && out.headers["set-cookie"]?.contains("Max-Age=0") == true)
        #expect(try await s.http.request("GET", "/api/v1/vms", headers: ["Authorization": "Bearer \(token)"]).status == 401)
    }

    @Test func badLogins() async throws {
        let s = try TestServer()
        let r1 = try await s.http.json("POST", "/api/v1/login", #"{"user":"admin","password":"nope"}"#)
        #expect(r1.status == 401 && r1.error == "invalid user or password")
        let r2 = try await s.http.json("POST", "/api/v1/login", #"{"user": "admin", "password": }"#)
        #expect(r2.status == 400 && r2.error?.hasPrefix("body:1:") == true, "\(r2.text)")
        let r3 = try await s.http.request("POST", "/api/v1/login", headers: ["Content-Type": "text/plain"], body: Array("user=admin".utf8))
        #expect(r3.status == 415)
        let r4 = try await s.http.json("POST", "/api/v1/login", #"{"user":"admin","password":"x","admin":true}"#)
        #expect(r4.status == 400)
        let r5 = try await s.http.json("POST", "/api/v1/login", #"[1,2]"#)
        #expect(r5.status == 400)
    }

    @Test func failedLoginsAreRateLimited() async throws {
        let s = try TestServer(tag: "rate")
        var statuses: [Int] = []
        for _ in 0..<7 {
            statuses.append(try await s.http.json("POST", "/api/v1/login", #"{"user":"admin","password":"wrong"}"#).status)
        }
        #expect(statuses == [401, 401, 401, 401, 401, 429, 429])
        let r = try await s.http.json("POST", "/api/v1/login", #"{"user":"admin","password":"correct horse"}"#)
        #expect(r.status == 429)
        let wait = Int(r.headers["retry-after"] ?? "") ?? 0
        #expect(wait >= 1 && wait <= 60)
        // Health still answers.
        #expect(try await s.http.request("GET", "/api/v1/health").status == 200)
    }

    @Test func bodiesAreLimited() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let auth = ["Authorization": "Bearer \(token)", "Content-Type": "application/json"]
        // A declared 64 MiB JSON body is refused before it is read.
        let http = s.http
        let r = try await offPool {
            let fd = try http.connect()
            defer { close(fd) }
            TestHTTP.send(fd, http.head("POST", "/api/v1/vms", auth, contentLength: 64 << 20))
            TestHTTP.send(fd, [UInt8](repeating: 0x20, count: 64 << 10))
            return TestHTTP.parse(TestHTTP.readAll(fd))
        }
        #expect(r.status == 413, "\(r.text)")
        #expect(r.error?.contains("larger than") == true)
        // A chunked body that grows past the limit too.
        let r2 = try await offPool {
            let fd2 = try http.connect()
            defer { close(fd2) }
            TestHTTP.send(fd2, http.head("POST", "/api/v1/vms", auth.merging(["Transfer-Encoding": "chunked"]) { a, _ in a }, contentLength: nil))
            let piece = [UInt8](repeating: 0x20, count: 256 << 10)
            for _ in 0..<6 { TestHTTP.send(fd2, Array("40000\r\n".utf8) + piece + Array("\r\n".utf8)) }
            TestHTTP.send(fd2, Array("0\r\n\r\n".utf8))
            return TestHTTP.parse(TestHTTP.readAll(fd2))
        }
        #expect(r2.status == 413, "\(r2.text)")
        // Still serving, nothing created.
        #expect(try await s.http.request("GET", "/api/v1/vms", headers: auth).json == .array([]))
    }

    @Test func vmCreateValidation() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let auth = ["Authorization": "Bearer \(token)"]
        let ok = try await s.http.json("POST", "/api/v1/vms", #"{"name":"tiny","memory":256,"cpus":1}"#, headers: auth)
        #expect(ok.status == 201 && ok.json?["name"]?.stringValue == "tiny" && ok.json?["state"]?.stringValue == "stopped")
        let dup = try await s.http.json("POST", "/api/v1/vms", #"{"name":"tiny"}"#, headers: auth)
        #expect(dup.status == 409)
        for body in [#"{"name":"a","memroy":256}"#, #"{"name":"a","memory":-5}"#, #"{"name":"a","memory":99999999999999}"#,
                     #"{"name":"../x"}"#, #"{"name":"a,b"}"#, #"{"name":"a","kernel":"../../etc/shadow"}"#,
                     #"{"name":"a","cdrom":"x,file=/etc/passwd"}"#, #"{"name":"a","memory":"lots"}"#] {
            let r = try await s.http.json("POST", "/api/v1/vms", body, headers: auth)
            #expect(r.status == 422 || r.status == 400, "\(body) → \(r.status) \(r.text)")
            #expect(r.error?.isEmpty == false)
        }
        let unknown = try await s.http.json("POST", "/api/v1/vms", #"{"name":"a","memroy":256}"#, headers: auth)
        #expect(unknown.error?.contains("memroy") == true)
        for body in [#"{"name":"a""#, "{", "", #"{"name":"a",}"#, "\u{0}\u{1}", #"{"name":"a"} trailing"#] {
            let r = try await s.http.json("POST", "/api/v1/vms", body, headers: auth)
            #expect(r.status == 400, "\(body) → \(r.status) \(r.text)")
            #expect(r.error?.hasPrefix("body:") == true, "\(r.text)")
        }
        let ct = try await s.http.request("POST", "/api/v1/vms", headers: auth.merging(["Content-Type": "application/x-www-form-urlencoded"]) { a, _ in a },
                                    body: Array("name=a".utf8))
        #expect(ct.status == 415)
        let mismatch = try await s.http.json("PUT", "/api/v1/vms/tiny", #"{"name":"other"}"#, headers: auth)
        #expect(mismatch.status == 400)
        #expect(await s.backend.vmNames() == ["tiny"])
    }

    @Test func hostilePathsOverTheWire() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let auth = ["Authorization": "Bearer \(token)"]
        await s.backend.addVM("keep")
        let long = String(repeating: "a", count: 80)
        let cases: [(String, String, Int)] = [
            ("GET", "/api/v1/vms/..%2Fx", 400), ("DELETE", "/api/v1/vms/a,b", 400), ("GET", "/api/v1/vms/\(long)", 400),
            ("DELETE", "/api/v1/vms/%2e%2e%2fkeep", 400), ("POST", "/api/v1/vms/%2e%2e/start", 400),
            ("PUT", "/api/v1/images/..%2F..%2Fetc%2Fpasswd", 400), ("DELETE", "/api/v1/images/a,b", 400),
            ("PUT", "/api/v1/images/-drive", 400), ("GET", "/%2e%2e/%2e%2e/etc/passwd", 400),
            ("GET", "/novnc/..%2F..%2Fetc%2Fpasswd", 400), ("GET", "/api/v1/nope", 404),
            ("DELETE", "/api/v1/vms", 405), ("GET", "/api/v1/tasks/%2e%2e", 400),
            ("GET", "/api/v1/vms/keep/serial?offset=-1", 400), ("GET", "/api/v1/vms/nothere", 404),
        ]
        for (m, p, want) in cases {
            let r = try await s.http.request(m, p, headers: auth)
            #expect(r.status == want, "\(m) \(p) → \(r.status) \(r.text)")
            #expect(r.error?.isEmpty == false, "\(m) \(p): \(r.text)")
        }
        let r405 = try await s.http.request("DELETE", "/api/v1/vms", headers: auth)
        #expect(r405.headers["allow"] == "GET, POST, HEAD")
        #expect(await s.backend.vmNames() == ["keep"])
        #expect(try await s.http.request("GET", "/api/v1/health").status == 200)
    }

    @Test func streamedUploadNeverHoldsTheBody() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let total = 32 << 20
        // Warm up, then measure.
        _ = try await s.http.upload("/api/v1/images/warm", headers: ["Authorization": "Bearer \(token)"], total: 1 << 20)
        let before = rssBytes()
        let (r, sum) = try await s.http.upload("/api/v1/images/debian.iso", headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/octet-stream"],
                                               total: total)
        let grown = rssBytes() - before
        #expect(r.status == 201, "\(r.text)")
        #expect(r.json?["name"]?.stringValue == "debian.iso" && r.json?["size"]?.intValue == total)
        let u = try #require(await s.backend.lastUpload())
        let snap = u.snapshot
        #expect(snap.bytes == total && snap.checksum == sum && snap.finished && !snap.aborted)
        #expect(snap.chunks > 16, "the body arrived in \(snap.chunks) chunks")
        #expect(u.expectedSize == Int64(total))
        #expect(grown < 16 << 20, "RSS grew by \(grown >> 20) MiB for a \(total >> 20) MiB upload")
        let list = try await s.http.request("GET", "/api/v1/images", headers: ["Authorization": "Bearer \(token)"])
        #expect(list.json?.arrayValue?.contains { $0["name"]?.stringValue == "debian.iso" } == true)
    }

    @Test func failingUploadAborts() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let (r, _) = try await s.http.upload("/api/v1/images/failing", headers: ["Authorization": "Bearer \(token)"], total: 4 << 20)
        #expect(r.status == 507, "\(r.text)")
        let snap = try #require(await s.backend.lastUpload()).snapshot
        #expect(snap.aborted && !snap.finished)
        let (refused, _) = try await s.http.upload("/api/v1/images/forbidden", headers: ["Authorization": "Bearer \(token)"], total: 1 << 20)
        #expect(refused.status == 409)
        // A client that goes away mid-body: the upload is aborted, not kept.
        let http = s.http
        try await offPool {
            let fd = try http.connect()
            TestHTTP.send(fd, http.head("PUT", "/api/v1/images/halfway", ["Authorization": "Bearer \(token)"], contentLength: 8 << 20))
            TestHTTP.send(fd, [UInt8](repeating: 7, count: 1 << 20))
            usleep(200_000)
            close(fd)
        }
        var half: FakeUpload.Snapshot? = nil
        for _ in 0..<50 {
            half = await s.backend.lastUpload()?.snapshot
            if half?.aborted == true { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(half?.aborted == true && half?.finished == false && (half?.bytes ?? 0) > 0, "\(String(describing: half))")
        #expect(await s.backend.listImages().contains { $0.name == "halfway" } == false)
        // Unauthenticated uploads are refused before the body is read.
        let (anon, _) = try await s.http.upload("/api/v1/images/x", headers: [:], total: 1 << 20)
        #expect(anon.status == 401)
    }

    @Test func serialScreenshotMetricsTasks() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let auth = ["Authorization": "Bearer \(token)"]
        await s.backend.addVM("tiny")
        let log = s.dir + "/tiny.serial.log"
        try Files.writeAtomically(log, "line one\nCLOUDBIOS-GUEST-READY\n")
        let a = try await s.http.request("GET", "/api/v1/vms/tiny/serial", headers: auth)
        #expect(a.status == 200 && a.text == "line one\nCLOUDBIOS-GUEST-READY\n")
        #expect(a.headers["content-type"]?.hasPrefix("text/plain") == true && a.headers["x-log-offset"] == "31")
        let fd = open(log, O_WRONLY | O_APPEND)
        _ = "typed: hi\n".withCString { write(fd, $0, 10) }
        close(fd)
        let b = try await s.http.request("GET", "/api/v1/vms/tiny/serial?offset=31", headers: auth)
        #expect(b.text == "typed: hi\n" && b.headers["x-log-offset"] == "41")
        let c = try await s.http.request("GET", "/api/v1/vms/tiny/serial?offset=41", headers: auth)
        #expect(c.status == 200 && c.body.isEmpty && c.headers["x-log-offset"] == "41")

        let png = try await s.http.request("GET", "/api/v1/vms/tiny/screenshot", headers: auth)
        #expect(png.status == 200 && png.headers["content-type"] == "image/png" && Array(png.body.prefix(4)) == [0x89, 0x50, 0x4e, 0x47])

        let host = try await s.http.request("GET", "/api/v1/host", headers: auth)
        #expect(host.json?["accel"]?["mode"]?.stringValue == "tcg" && host.json?["cpu"]?["count"]?.intValue == 2)
        let tasks = try await s.http.request("GET", "/api/v1/tasks", headers: auth)
        #expect(tasks.json?[0]?["id"]?.stringValue == "t1")
        #expect(try await s.http.request("GET", "/api/v1/tasks/t1", headers: auth).json?["progress"]?.intValue == 50)
        let inst = try await s.http.json("POST", "/api/v1/install", #"{"dry_run":true,"disk":{"serial":"TARGET*"}}"#, headers: auth)
        #expect(inst.status == 202 && inst.json?["result"]?["dry_run"] == .bool(true))
        #expect(try await s.http.request("GET", "/api/v1/disks", headers: auth).json?[0]?["path"]?.stringValue == "/dev/vda")

        let m = try await s.http.request("GET", "/metrics", headers: auth)
        #expect(m.status == 200 && m.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(m.text.contains("cloudbios_vms 1"))
        #expect(m.text.contains(#"cloudbios_http_requests_total{route="GET /api/v1/vms/{name}/serial",status="200"} 3"#), "\(m.text)")
        #expect(m.text.contains("cloudbios_http_request_duration_seconds_bucket{le=\"+Inf\"}"))
    }

    @Test func curlUploadWithExpectContinue() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        let file = s.dir + "/blob"
        try Files.writeAtomically(file, [UInt8](repeating: 0x5a, count: 3 << 20))
        // curl sends `Expect: 100-continue` for bodies over 1 MiB.
        let r = try await curl(["-s", "-w", "\n%{http_code}", "--max-time", "20", "-H", "Authorization: Bearer \(token)",
                                "-T", file, s.server.url + "/api/v1/images/blob.img"])
        #expect(r.output.hasSuffix("\n201"), "\(r.output)")
        #expect(await s.backend.lastUpload()?.snapshot.bytes == 3 << 20)
        let anon = try await curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-T", file, s.server.url + "/api/v1/images/blob2.img"])
        #expect(anon.output == "401")
    }

    @Test func listensOnIPv6() async throws {
        let dir = makeTempDir("v6")
        defer { Files.removeTree(dir) }
        var cfg = PanelConfig()
        cfg.listen = "[::1]:0"
        cfg.tls = .off
        let server = try PanelServer(config: cfg, stateDir: dir, webRoot: dir, backend: FakeBackend(dir: dir))
        try server.start()
        defer { server.stop() }
        #expect(server.url == "http://[::1]:\(server.port)")
        let r = try await curl(["-gs", "--max-time", "10", server.url + "/api/v1/health"])
        #expect(r.output.contains("\"status\":\"ok\""), "\(r.output)")
        // A listen address that is not an IP is a clear error, not a crash.
        cfg.listen = "example.com:80"
        let bad = try PanelServer(config: cfg, stateDir: dir, webRoot: dir, backend: FakeBackend(dir: dir))
        #expect(throws: SystemError.self) { try bad.start() }
    }

    @Test func stopAnswersWaitingRequests() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        await s.backend.addVM("hang")
        let http = s.http
        async let waiting = http.request("GET", "/api/v1/vms/hang/screenshot", headers: ["Authorization": "Bearer \(token)"])
        for _ in 0..<100 where await s.backend.hanging == 0 { try await Task.sleep(nanoseconds: 20_000_000) }
        #expect(await s.backend.hanging == 1)
        let t0 = Clock.monotonic()
        s.server.stop()
        let r = try await waiting
        #expect(r.status == 503, "\(r.text)")
        #expect(Clock.monotonic() - t0 < 6)
    }

    @Test func staticFilesWithValidators() async throws {
        let s = try TestServer()
        let r = try await s.http.request("GET", "/")
        #expect(r.status == 200 && r.text.contains("CloudBIOS") && r.headers["content-type"] == "text/html; charset=utf-8")
        let etag = try #require(r.headers["etag"])
        #expect(r.headers["last-modified"]?.hasSuffix("GMT") == true)
        #expect(try await s.http.request("GET", "/", headers: ["If-None-Match": etag]).status == 304)
        #expect(try await s.http.request("GET", "/console").text.contains("console"))
        #expect(try await s.http.request("GET", "/css/panel.css").headers["content-type"] == "text/css; charset=utf-8")
        #expect(try await s.http.request("GET", "/missing.js").status == 404)
        #expect(try await s.http.request("GET", "/css").status == 404)
        #expect(try await s.http.request("POST", "/").status == 405)
    }

    @Test func webSocketConsoleBridgesToVNC() async throws {
        let s = try TestServer()
        let (token, _) = try await s.login()
        await s.backend.addVM("tiny")
        // Without a running VM: a clear 409 before any upgrade.
        let http = s.http
        let r0 = try await offPool {
            let fd0 = try http.connect()
            defer { close(fd0) }
            TestHTTP.send(fd0, wsHandshake(http.port, "/api/v1/vms/tiny/console?token=\(token)"))
            return TestHTTP.parse(TestHTTP.readAll(fd0))
        }
        #expect(r0.status == 409, "\(r0.text)")

        let sock = s.dir + "/vnc.sock"
        let echo = try EchoServer(path: sock)
        await s.backend.setVNCPath(sock)
        let (head, f1, pong, close1) = try await offPool {
            let fd = try http.connect()
            defer { close(fd) }
            TestHTTP.send(fd, wsHandshake(http.port, "/api/v1/vms/tiny/console?token=\(token)"))
            let head = readHead(fd)
            // RFB-ish bytes through, echoed back by the fake VNC server.
            TestHTTP.send(fd, WebSocket.encode(.init(opcode: .binary, payload: Array("RFB 003.008\n".utf8)), mask: [1, 2, 3, 4]))
            var dec = WebSocket.Decoder(requireMask: false)
            let f1 = try readFrame(fd, &dec)
            TestHTTP.send(fd, WebSocket.encode(.init(opcode: .ping, payload: [7]), mask: [5, 6, 7, 8]))
            let pong = try readFrame(fd, &dec)
            TestHTTP.send(fd, WebSocket.encode(.init(opcode: .close, payload: WebSocket.closePayload(1000)), mask: [1, 1, 1, 1]))
            let close1 = try readFrame(fd, &dec)
            return (head, f1, pong, close1)
        }
        #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
        #expect(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        #expect(head.contains("Sec-WebSocket-Protocol: binary"))
        #expect(f1?.opcode == .binary && f1?.payload == Array("RFB 003.008\n".utf8))
        #expect(pong == .init(opcode: .pong, payload: [7]))
        #expect(close1?.opcode == .close)
        echo.stop()

        // Plain GET without Upgrade: 426.
        let plain = try await s.http.request("GET", "/api/v1/vms/tiny/console", headers: ["Authorization": "Bearer \(token)"])
        #expect(plain.status == 426)
        // Cookie from another origin: 403.
        var h = wsHandshake(s.http.port, "/api/v1/vms/tiny/console")
        h.removeLast(2)
        h += Array("Cookie: cloudbios_session=\(token)\r\nOrigin: https://evil.example\r\n\r\n".utf8)
        let hh = h
        let cross = try await offPool {
            let fd2 = try http.connect()
            defer { close(fd2) }
            TestHTTP.send(fd2, hh)
            return TestHTTP.parse(TestHTTP.readAll(fd2))
        }
        #expect(cross.status == 403)
    }

    @Test func selfSignedTLS() async throws {
        let s = try TestServer(tls: .selfSigned, tag: "tls")
        let state = s.dir + "/state/tls"
        let fp = try #require(Files.readTrimmed(state + "/fingerprint"))
        #expect(fp.utf8.count == 95 && fp == s.server.tlsFingerprint)
        #expect(fp.split(separator: ":").count == 32 && fp == fp.uppercased())
        var st = stat()
        stat(state + "/key.pem", &st)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(s.server.url.hasPrefix("https://"))
        let health = try await curl(["-sk", "-D", "-", "--max-time", "10", s.server.url + "/api/v1/health"])
        #expect(health.status == 0, "\(health.output)")
        #expect(health.output.contains("\"status\":\"ok\""))
        #expect(health.output.lowercased().contains("strict-transport-security: max-age="))
        // The certificate names the host and 127.0.0.1 (curl verifies with --cacert and the pinned name).
        let verified = try await curl(["-s", "--max-time", "10", "--cacert", state + "/cert.pem", s.server.url + "/api/v1/health"])
        #expect(verified.status == 0, "\(verified.output)")
        // Cookies carry Secure under TLS.
        let login = try await curl(["-sk", "-D", "-", "--max-time", "10", "-H", "Content-Type: application/json",
                                                   "--data", #"{"user":"admin","password":"correct horse"}"#, s.server.url + "/api/v1/login"])
        #expect(login.output.contains("Secure"), "\(login.output)")
        // Restart: same certificate.
        s.server.stop()
        var cfg = PanelConfig(); cfg.listen = "127.0.0.1:0"; cfg.tls = .selfSigned
        let again = try PanelServer(config: cfg, stateDir: s.dir + "/state", webRoot: nil, backend: s.backend, hostname: "box1")
        #expect(again.tlsFingerprint == fp)
        // Given files: used as they are, fingerprint written for the console.
        try Files.writeAtomically(s.dir + "/c.pem", try Files.readString(state + "/cert.pem"))
        try Files.writeAtomically(s.dir + "/k.pem", try Files.readString(state + "/key.pem"))
        Files.remove(state + "/fingerprint")
        cfg.tls = .files(cert: s.dir + "/c.pem", key: s.dir + "/k.pem")
        let given = try PanelServer(config: cfg, stateDir: s.dir + "/state", webRoot: nil, backend: s.backend)
        #expect(given.tlsFingerprint == fp && Files.readTrimmed(state + "/fingerprint") == fp)
        // A key that does not match: a clear error.
        let other = try TLSMaterial.generate(hostname: "x", addresses: [])
        try Files.writeAtomically(s.dir + "/k.pem", other.keyPEM)
        #expect(throws: TLSMaterial.Failure.self) {
            _ = try PanelServer(config: cfg, stateDir: s.dir + "/state", webRoot: nil, backend: s.backend)
        }
        // Off: no fingerprint left behind.
        cfg.tls = .off
        _ = try PanelServer(config: cfg, stateDir: s.dir + "/state", webRoot: nil, backend: s.backend)
        #expect(!Files.exists(state + "/fingerprint"))
    }
}

func wsHandshake(_ port: Int, _ path: String) -> [UInt8] {
    Array(("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary, base64\r\n\r\n").utf8)
}

func readHead(_ fd: Int32) -> String {
    var out: [UInt8] = []
    var c: UInt8 = 0
    while !(out.count >= 4 && out.suffix(4) == [13, 10, 13, 10]) {
        if recv(fd, &c, 1, 0) != 1 { break }
        out.append(c)
    }
    return String(decoding: out, as: UTF8.self)
}

func readFrame(_ fd: Int32, _ dec: inout WebSocket.Decoder) throws -> WebSocket.Frame? {
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        if let f = try dec.next() { return f }
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return nil }
        dec.append(Array(buf[0..<n]))
    }
}

/// A Unix-socket echo server on its own thread (stands in for QEMU's VNC).
final class EchoServer: @unchecked Sendable {
    let fd: Int32
    let path: String
    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0, listen(fd, 4) == 0 else { throw SystemError("bind \(path)", errno: currentErrno()) }
        let lfd = fd
        var tid = pthread_t()
        let box = Unmanaged.passRetained(Box(lfd)).toOpaque()
        pthread_create(&tid, nil, { arg in
            let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            while true {
                let c = accept(b.fd, nil, nil)
                if c < 0 { return nil }
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    _ = buf.withUnsafeBytes { send(c, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
                }
                close(c)
            }
        }, box)
        pthread_detach(tid)
    }
    final class Box { let fd: Int32; init(_ f: Int32) { fd = f } }
    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd); unlink(path) }
}

func curl(_ args: [String]) async throws -> (status: Int32, output: String) {
    try await offPool { try Launcher("/usr/bin/curl", args).run() }
}

/// A WebSocket client over TLS (Python's ssl), as a browser reaches the
/// console through the default self-signed certificate.
let wssClient = #"""
import socket, ssl, sys, os, struct
port, token = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
s.sendall(("GET /api/v1/vms/tiny/console?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: binary\r\n\r\n" % (token, port)).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head
payload = os.urandom(100000)
mask = os.urandom(4)
masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
s.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", len(payload)) + mask + masked)
buf, got = b"", b""
while len(got) < len(payload):
    buf += s.recv(65536)
    while len(buf) >= 2:
        n, off = buf[1] & 0x7F, 2
        if (n == 126 and len(buf) < 4) or (n == 127 and len(buf) < 10): break
        if n == 126: n, off = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127: n, off = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < off + n: break
        assert buf[0] == 0x82, buf[:2]
        got += buf[off:off + n]; buf = buf[off + n:]
assert got == payload, "payload differs"
print("wss ok", len(got))
"""#

extension ServerTests {
    @Test func webSocketConsoleOverTLS() async throws {
        let s = try TestServer(tls: .selfSigned, tag: "wss")
        await s.backend.addVM("tiny")
        let sock = s.dir + "/vnc.sock"
        let echo = try EchoServer(path: sock)
        defer { echo.stop() }
        await s.backend.setVNCPath(sock)
        let login = try await curl(["-sk", "--max-time", "10", "-H", "Content-Type: application/json",
                                    "--data", #"{"user":"admin","password":"correct horse"}"#, s.server.url + "/api/v1/login"])
        let token = try #require((try? JSONValue.parse(login.output))?["token"]?.stringValue)
        try Files.writeAtomically(s.dir + "/wss.py", wssClient)
        let port = s.server.port
        let script = s.dir + "/wss.py"
        let r = try await offPool { try Launcher("/usr/bin/python3", [script, String(port), token]).run() }
        #expect(r.status == 0 && r.output.contains("wss ok 100000"), "\(r.output)")
    }
}
