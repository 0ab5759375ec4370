#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Testing
@testable import Panel

@Suite(.serialized) struct FirstRunTests {
    static func make(_ tag: String, saveBlocker: String? = "test: no stick",
                     saveToStick: (@Sendable ([String: String]) throws -> String)? = nil) -> (FirstRun, String) {
        let dir = makeTempDir(tag)
        let store = UserStore(path: dir + "/users.yaml")
        let f = FirstRun(users: UserDirectory(config: [], store: store),
                         options: .init(codeFile: dir + "/setup-code", saveBlocker: saveBlocker, saveToStick: saveToStick))
        return (f, dir)
    }

    @Test func codeIsEightUnambiguousCharactersKeptInTheCodeFile() throws {
        let (f, dir) = Self.make("fr-code")
        defer { Files.removeTree(dir) }
        let code = try #require(f.currentCode())
        #expect(code.count == 9 && code.dropFirst(4).first == "-")
        #expect(code.replacingDash().allSatisfy { FirstRun.alphabet.contains($0.asciiValue!) })
        #expect(Files.readTrimmed(dir + "/setup-code") == code)
        #expect(f.currentCode() == code)
        // a restarted daemon shows the same code
        let again = FirstRun(users: UserDirectory(config: [], store: UserStore(path: dir + "/users.yaml")),
                             options: .init(codeFile: dir + "/setup-code"))
        #expect(again.currentCode() == code)
        // typed loosely: lower case, no dash, O for 0 and I/L for 1
        #expect(FirstRun.normalize(code.lowercased()) == code.replacingDash())
        #expect(FirstRun.normalize("ab cd-0o1l") == "ABCD0011")
        #expect(FirstRun.normalize("ABCD-EFG") == nil && FirstRun.normalize("ABCD-EFGU") == nil)
    }

    @Test func wrongCodesAreRefusedThenThrottled() throws {
        let (f, dir) = Self.make("fr-wrong")
        defer { Files.removeTree(dir) }
        let code = try #require(f.currentCode())
        let wrong = code.hasPrefix("0") ? "1111-1111" : "0000-0000"
        for _ in 0..<5 {
            #expect(throws: FirstRun.Refusal.wrongCode) {
                try f.setup(.init(code: wrong, user: "admin", password: "long enough", save: false, sshAuthorizedKeys: []), from: "10.0.0.1")
            }
        }
        // now even the right code waits, from that address
        #expect {
            try f.setup(.init(code: code, user: "admin", password: "long enough", save: false, sshAuthorizedKeys: []), from: "10.0.0.1")
        } throws: { e in
            if case FirstRun.Refusal.throttled(let s) = e { return s > 0 } else { return false }
        }
        #expect(f.pending)
        // another address is not locked out
        let o = try f.setup(.init(code: code, user: "admin", password: "long enough", save: false, sshAuthorizedKeys: []), from: "10.0.0.2")
        #expect(o.storage == "config")  // a temp dir on disk outlives a reboot
        #expect(!f.pending)
    }

    @Test func setupCreatesTheAdminOnceAndForgetsTheCode() throws {
        let (f, dir) = Self.make("fr-ok")
        defer { Files.removeTree(dir) }
        let code = try #require(f.currentCode())
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm5Wm5cZ4Wq4nY1p7sQq0Zr8rJ3x0cX5o3V1bQ2vZ1d me@laptop"
        #expect(throws: FirstRun.Refusal.invalid("the password must have at least 8 characters")) {
            try f.setup(.init(code: code, user: "admin", password: "short", save: false, sshAuthorizedKeys: []), from: "a")
        }
        #expect(throws: FirstRun.Refusal.self) {
            try f.setup(.init(code: code, user: "admin", password: "long enough", save: false, sshAuthorizedKeys: ["not a key"]), from: "a")
        }
        #expect(throws: FirstRun.Refusal.self) {
            try f.setup(.init(code: code, user: "../root", password: "long enough", save: false, sshAuthorizedKeys: []), from: "a")
        }
        _ = try f.setup(.init(code: code.lowercased(), user: "admin", password: "long enough", save: false, sshAuthorizedKeys: [key]), from: "a")
        #expect(!Files.exists(dir + "/setup-code"))
        #expect(f.currentCode() == nil)
        let users = try LocalUsers.parse(path: dir + "/users.yaml", text: try Files.readString(dir + "/users.yaml"))
        #expect(users.map(\.name) == ["admin"] && users[0].sshAuthorizedKeys == [key])
        #expect(PasswordHash.verify("long enough", hash: users[0].passwordHash))
        #expect(throws: FirstRun.Refusal.done) {
            try f.setup(.init(code: code, user: "evil", password: "long enough", save: false, sshAuthorizedKeys: []), from: "a")
        }
    }

    @Test func saveOnTheStickMovesTheUsersFile() throws {
        let stick = makeTempDir("fr-stick")
        defer { Files.removeTree(stick) }
        let ram = "/dev/shm/cbfr-\(getpid())"
        try Files.makeDirectories(ram)
        defer { Files.removeTree(ram) }
        let store = UserStore(path: ram + "/users.yaml")
        #expect(!store.persistent)
        let f = FirstRun(users: UserDirectory(config: [], store: store), options: .init(codeFile: ram + "/code", saveBlocker: nil) { files in
            for (n, t) in files { try Files.writeAtomically(stick + "/" + n, t) }
            return stick
        })
        let code = try #require(f.currentCode())
        let o = try f.setup(.init(code: code, user: "root1", password: "long enough", save: true, sshAuthorizedKeys: []), from: "a")
        #expect(o.storage == "stick")
        #expect(try Files.readString(stick + "/cloudbios.yaml") == "version: 1\n")
        #expect(f.users.store?.path == stick + "/users.yaml")
        #expect(f.users.passwordHash("root1") != nil)
        #expect(!Files.exists(ram + "/users.yaml"))
    }

    @Test func directoryReadsTheFileAgainWhenItChanges() throws {
        let dir = makeTempDir("fr-dir")
        defer { Files.removeTree(dir) }
        let store = UserStore(path: dir + "/users.yaml")
        let d = UserDirectory(config: [PanelUser(name: "cfg", passwordHash: "$6$a$b")], store: store)
        #expect(d.all().keys.sorted() == ["cfg"])
        try store.upsert(PanelUser(name: "local", passwordHash: "$6$c$d"))
        // a console write is seen by the next look after the short cache
        usleep(600_000)
        #expect(d.all().keys.sorted() == ["cfg", "local"])
        // the config's user wins over a local one of the same name
        try store.upsert(PanelUser(name: "cfg", passwordHash: "$6$x$y"))
        d.invalidate()
        #expect(d.passwordHash("cfg") == "$6$a$b")
    }

    @Test func usersFileRoundTripsAndIsStrict() throws {
        let users = [PanelUser(name: "admin", passwordHash: "$6$salt$hash", sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA \"quoted\" c\\d"]),
                     PanelUser(name: "ops.1", passwordHash: "$y$j9T$abc$def")]
        #expect(try LocalUsers.parse(path: "u.yaml", text: LocalUsers.render(users)) == users)
        #expect(try LocalUsers.parse(path: "u.yaml", text: LocalUsers.render([])) == [])
        #expect {
            try LocalUsers.parse(path: "u.yaml", text: "users:\n  - name: a\n    password_hash: \"$6$a$b\"\n    pasword: x\n")
        } throws: { e in
            (e as? ConfigErrors)?.description.contains("u.yaml:4:5: unknown key 'pasword'") == true
        }
    }
}

@Suite(.serialized) struct FirstRunServerTests {
    @Test func untilTheFirstAdminExistsOnlySetupAnswers() async throws {
        let dir = makeTempDir("fr-srv")
        defer { Files.removeTree(dir) }
        let ram = "/dev/shm/cbfrs-\(getpid())"
        try Files.makeDirectories(ram)
        defer { Files.removeTree(ram) }
        try Files.makeDirectories(dir + "/web")
        try Files.writeAtomically(dir + "/web/index.html", "<!doctype html><title>CloudBIOS</title>")
        var cfg = PanelConfig()
        cfg.listen = "127.0.0.1:0"
        cfg.tls = .off
        let server = try PanelServer(config: cfg, stateDir: dir + "/state", webRoot: dir + "/web", backend: FakeBackend(dir: dir),
                                     version: "9.9.9", hostname: "box1", userStore: UserStore(path: ram + "/users.yaml"),
                                     firstRun: .init(codeFile: dir + "/setup-code", saveBlocker: "booted from a CD"))
        try server.start()
        defer { server.stop() }
        let http = TestHTTP(port: server.port)
        let health = try await http.request("GET", "/api/v1/health")
        #expect(health.json?["setup_required"] == .bool(true))
        for (m, p) in [("GET", "/api/v1/vms"), ("GET", "/api/v1/host"), ("GET", "/metrics")] {
            let r = try await http.request(m, p)
            #expect(r.status == 401 && r.error?.contains("setup code is shown on this machine's screen") == true, "\(m) \(p): \(r.text)")
        }
        let login = try await http.json("POST", "/api/v1/login", #"{"user":"admin","password":"whatever1"}"#)
        #expect(login.status == 401 && login.error?.hasPrefix("setup required") == true)
        let st = try await http.request("GET", "/api/v1/setup")
        #expect(st.json?["required"] == .bool(true) && st.json?["can_save"] == .bool(false))
        #expect(st.json?["note"]?.stringValue?.contains("booted from a CD") == true)
        let code = try #require(Files.readTrimmed(dir + "/setup-code"))
        let bad = try await http.json("POST", "/api/v1/setup", #"{"code":"0000-0000","user":"admin","password":"long enough"}"#)
        #expect(bad.status == 403 || code == "0000-0000")
        let unknown = try await http.json("POST", "/api/v1/setup", #"{"code":"x","user":"admin","password":"long enough","admin":true}"#)
        #expect(unknown.status == 400)
        let ok = try await http.json("POST", "/api/v1/setup", #"{"code":"\#(code)","user":"admin","password":"long enough","save":true}"#)
        #expect(ok.status == 201, "\(ok.text)")
        #expect(ok.json?["message"]?.stringValue?.contains("created") == true)
        let token = try #require(ok.json?["token"]?.stringValue)
        let vms = try await http.request("GET", "/api/v1/vms", headers: ["Authorization": "Bearer " + token])
        #expect(vms.status == 200)
        let again = try await http.json("POST", "/api/v1/setup", #"{"code":"\#(code)","user":"evil","password":"long enough"}"#)
        #expect(again.status == 409)
        let relog = try await http.json("POST", "/api/v1/login", #"{"user":"admin","password":"long enough"}"#)
        #expect(relog.status == 200)
        #expect(try await http.request("GET", "/api/v1/health").json?["setup_required"] == .bool(false))
    }
}
