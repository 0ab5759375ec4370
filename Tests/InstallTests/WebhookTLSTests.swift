import Testing
@testable import Install
import Disks
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A real HTTPS receiver (python3 http.server wrapped in ssl) with a
/// throwaway self-signed certificate for 127.0.0.1; every POST is appended
/// to a file as one JSON line.
final class HTTPSReceiver {
    let dir: String
    let port: Int
    var pid: pid_t = 0
    var cert: String { dir + "/cert.pem" }
    var log: String { dir + "/posts.jsonl" }

    init() throws {
        dir = "/tmp/cb-webhook-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        port = 20000 + Int(UInt32.random(in: 0..<20000))
        let gen = try Launcher("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem",
                                                    "-out", cert, "-days", "1", "-subj", "/CN=cloudbios-test",
                                                    "-addext", "subjectAltName=IP:127.0.0.1"]).run()
        try #require(gen.status == 0, "\(gen.output)")
    }

    func start() throws {
        pid = try Launcher("/usr/bin/python3", ["-c", """
            import http.server, json, ssl, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    with open(sys.argv[2], "a") as f:
                        f.write(json.dumps({"path": self.path, "type": self.headers.get("Content-Type"), "body": body.decode()}) + "\\n")
                    self.send_response(204)
                    self.end_headers()
                def log_message(self, *a):
                    pass
            s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.load_cert_chain(sys.argv[3], sys.argv[4])
            s.socket = c.wrap_socket(s.socket, server_side=True)
            s.serve_forever()
            """, "\(port)", log, cert, dir + "/key.pem"]).spawn()
    }

    /// Waits until the server accepts connections.
    func waitListening() throws {
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET); a.sin_port = UInt16(port).bigEndian; a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
            close(fd)
            if ok { return }
            usleep(100_000)
        }
        throw SystemError("the HTTPS receiver did not start", errno: ETIMEDOUT)
    }

    /// The POST bodies received, in order.
    func posts() throws -> [(path: String, type: String?, body: JSONValue)] {
        guard Files.exists(log) else { return [] }
        return try Files.readString(log).split(separator: "\n").map { line in
            let o = try JSONValue.parse(String(line))
            return (o["path"]?.stringValue ?? "", o["type"]?.stringValue, try JSONValue.parse(o["body"]?.stringValue ?? ""))
        }
    }

    func stop() {
        if pid > 0 { kill(pid, SIGKILL); _ = Launcher.wait(pid) }
        Files.removeTree(dir)
    }
}

final class OutcomeBox: @unchecked Sendable {
    var value: Webhook.Outcome?
    let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(m, nil) }
    func set(_ v: Webhook.Outcome) { pthread_mutex_lock(m); value = v; pthread_mutex_unlock(m) }
    func get() -> Webhook.Outcome? { pthread_mutex_lock(m); defer { pthread_mutex_unlock(m) }; return value }
}

@Suite(.serialized) struct WebhookTLSTests {
    @Test func parsesHTTPSURLs() {
        let w = Webhook("https://hooks.example.test/install?k=1", caFile: nil)
        #expect(w?.tls == true && w?.port == 443 && w?.host == "hooks.example.test" && w?.path == "/install?k=1")
        #expect(Webhook("HTTPS://[::1]:8443", caFile: "/x.pem")?.port == 8443)
        #expect(Webhook("https://[::1]:8443", caFile: "/x.pem")?.caFile == "/x.pem")
        #expect(Webhook("http://h/")?.tls == false)
        #expect(Webhook("https://:443/") == nil)
        #expect(Webhook("https://h/a b") == nil)
        #expect(Webhook("gopher://h/") == nil)
    }

    @Test(.timeLimit(.minutes(2))) func eventsArriveOverHTTPSWithJSONBodies() throws {
        let rx = try HTTPSReceiver()
        defer { rx.stop() }
        let hook = try #require(Webhook("https://127.0.0.1:\(rx.port)/cloudbios/install", caFile: rx.cert))

        // The first event is posted before the receiver listens: the
        // connection is refused and the retry (1 s later) delivers it.
        let first = OutcomeBox()
        Background.run { first.set(hook.deliver(.object(["event": .string("probe")]))) }
        usleep(200_000)
        try rx.start()
        var waited = 0
        while first.get() == nil && waited < 200 { usleep(100_000); waited += 1 }
        let o = try #require(first.get())
        #expect(o.status == 204 && o.delivered, "\(o)")
        #expect(o.attempts >= 2, "the first attempt cannot have reached a server that was not started yet: \(o)")

        // A whole install's worth of events through the reporter.
        var i = InstallConfig(); i.disk.serial = "T*"
        let plan = try Planner.plan(i, disks: [disk("vda", serial: "T1")])
        var logged: [String] = []
        let reporter = ProgressReporter(webhook: hook, log: { logged.append($0) }, hostname: "box1")
        reporter.handle(.started(plan))
        for p in stride(from: 0, through: 100, by: 5) { reporter.handle(.progress(percent: p, message: "step \(p)")) }
        reporter.handle(.succeeded("CloudBIOS installed on \(plan.disk.label)"))
        #expect(!logged.contains { $0.contains("webhook") }, "\(logged)")

        let posts = try rx.posts()
        #expect(posts.allSatisfy { $0.path == "/cloudbios/install" && $0.type == "application/json" })
        let events = posts.dropFirst().map { $0.body["event"]?.stringValue ?? "?" }
        #expect(posts.first?.body["event"]?.stringValue == "probe")
        #expect(events.first == "started")
        #expect(events.last == "succeeded")
        #expect(events.filter { $0 == "progress" }.count >= 5)
        let started = try #require(posts.dropFirst().first?.body)
        #expect(started["disk"]?.stringValue == "/dev/vda")
        #expect(started["hostname"]?.stringValue == "box1")
        #expect(started["percent"]?.intValue == 0)
        let done = try #require(posts.last?.body)
        #expect(done["percent"]?.intValue == 100)
        #expect(done["message"]?.stringValue?.contains("CloudBIOS installed on /dev/vda") == true)
        let percents = posts.dropFirst().compactMap { $0.body["percent"]?.intValue }
        #expect(percents == percents.sorted())
    }

    @Test(.timeLimit(.minutes(2))) func anUntrustedCertificateIsRefusedWithAReadableMessage() throws {
        let rx = try HTTPSReceiver()
        defer { rx.stop() }
        try rx.start()
        try rx.waitListening()
        // The system trust store does not know the throwaway CA.
        let untrusting = try #require(Webhook("https://127.0.0.1:\(rx.port)/hook", caFile: nil))
        let o = untrusting.deliver(.object(["event": .string("started")]))
        #expect(o.status == nil && !o.delivered)
        #expect(o.attempts == 1, "a refused certificate is final, not retried: \(o)")
        let why = try #require(o.error)
        #expect(why.contains("TLS handshake failed") && why.contains("issuer is unknown"), "\(why)")

        // The reporter says so on the console.
        var logged: [String] = []
        let reporter = ProgressReporter(webhook: untrusting, log: { logged.append($0) })
        reporter.handle(.failed("disk gone"))
        #expect(logged.contains { $0.contains("webhook https://127.0.0.1:\(rx.port)") && $0.contains("failed") && $0.contains("issuer is unknown") }, "\(logged)")

        // A certificate for another name, from a trusted CA: refused too.
        let otherName = try #require(Webhook("https://localhost:\(rx.port)/hook", caFile: rx.cert))
        let o2 = otherName.deliver(.object(["event": .string("started")]))
        #expect(!o2.delivered && (o2.error ?? "").contains("name in the certificate does not match"), "\(o2)")

        // Nothing got through.
        #expect(try rx.posts().isEmpty)
        // The same receiver with the CA: accepted (the server is fine).
        let trusting = try #require(Webhook("https://127.0.0.1:\(rx.port)/hook", caFile: rx.cert))
        #expect(trusting.post(.object(["event": .string("started")])) == 204)
        #expect(try rx.posts().count == 1)
    }

    @Test func configValidationAcceptsHTTPSAndRejectsOtherSchemesWithLineAndColumn() throws {
        let base = "version: 1\ninstall:\n  disk: {serial: \"T*\"}\n  webhook: "
        let ok = try ConfigLoader.load(path: "c.yaml", text: base + "https://hooks.example.test/x\n")
        #expect(ok.install?.webhook == "https://hooks.example.test/x")
        #expect(throws: ConfigErrors.self) { try ConfigLoader.load(path: "c.yaml", text: base + "ftp://hooks.example.test/x\n") }
        do {
            _ = try ConfigLoader.load(path: "c.yaml", text: base + "ftp://hooks.example.test/x\n")
        } catch {
            let text = error.errors.map(\.description).joined(separator: "\n")
            #expect(text.contains("c.yaml:4:12:") && text.contains("webhook must be an http:// or https:// URL"), "\(text)")
        }
    }
}
