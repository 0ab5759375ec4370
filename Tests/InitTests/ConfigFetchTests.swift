import Testing
@testable import Init
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A config server for `cloudbios.config=http(s)://…`: python3, https with
/// a throwaway certificate for `localhost` and plain http, on 127.0.0.1.
final class ConfigServer {
    let dir: String
    let pid: pid_t
    let httpsPort: Int
    let httpPort: Int
    var cert: String { dir + "/cert.pem" }
    static let config = "version: 1\nhostname: fetched-over-the-net\n"

    init() throws {
        dir = "/tmp/cb-config-fetch-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        let gen = try Launcher("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem",
                                                    "-out", dir + "/cert.pem", "-days", "1", "-subj", "/CN=localhost",
                                                    "-addext", "subjectAltName=DNS:localhost"]).run()
        guard gen.status == 0 else { throw InitError(gen.output) }
        try Files.writeAtomically(dir + "/cloudbios.yaml", Self.config)
        pid = try Launcher("/usr/bin/python3", ["-c", """
            import http.server, ssl, sys, threading
            d = sys.argv[1]
            served = {"flaky": 0}
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    if self.path == "/moved":
                        return self.answer(302, b"", [("Location", "/cloudbios.yaml")])
                    if self.path == "/to-http":
                        return self.answer(302, b"", [("Location", "http://localhost:" + str(plain.server_address[1]) + "/cloudbios.yaml")])
                    if self.path == "/flaky":
                        served["flaky"] += 1
                        if served["flaky"] < 3:
                            return self.answer(503, b"busy", [])
                    if self.path in ("/cloudbios.yaml", "/flaky"):
                        return self.answer(200, open(d + "/cloudbios.yaml", "rb").read(), [])
                    self.answer(404, b"no such file", [])
                def answer(self, status, body, headers):
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *a):
                    pass
            secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.load_cert_chain(d + "/cert.pem", d + "/key.pem")
            secure.socket = c.wrap_socket(secure.socket, server_side=True)
            plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            threading.Thread(target=plain.serve_forever, daemon=True).start()
            open(d + "/ports.tmp", "w").write("%d %d" % (secure.server_address[1], plain.server_address[1]))
            import os; os.rename(d + "/ports.tmp", d + "/ports")
            secure.serve_forever()
            """, dir]).spawn()
        var ports: [Int] = []
        for _ in 0..<100 where ports.count != 2 {
            ports = (Files.readTrimmed(dir + "/ports") ?? "").split(separator: " ").compactMap { Int($0) }
            if ports.count != 2 { usleep(50_000) }
        }
        guard ports.count == 2 else { kill(pid, SIGKILL); _ = Launcher.wait(pid); throw InitError("the config server did not start") }
        httpsPort = ports[0]
        httpPort = ports[1]
    }

    deinit {
        kill(pid, SIGKILL)
        _ = Launcher.wait(pid)
        Files.removeTree(dir)
    }
}

@Suite(.serialized) struct ConfigFetchTests {
    /// Boots off-target with `cloudbios.config=URL` on the command line.
    func boot(_ url: String, trust: TLSTrust) -> (pe: PE, root: String, seconds: Double) {
        let root = OffTargetBootTests().makeRoot(cmdline: "console=ttyS0 cloudbios.config=\(url)", blkid: "", files: [:])
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.configFetch.trust = trust
        pe.configFetch.window = 10
        pe.configFetch.pause = 0.2
        let t0 = Clock.monotonic()
        pe.boot()
        return (pe, root, Clock.monotonic() - t0)
    }

    @Test(.timeLimit(.minutes(1))) func anHTTPSConfigIsFetchedWithItsCertificateChecked() throws {
        let server = try ConfigServer()
        let url = "https://localhost:\(server.httpsPort)/moved"
        let (pe, root, _) = boot(url, trust: .authorities(server.cert))
        defer { Files.removeTree(root) }
        #expect(pe.configError == nil, "\(pe.configError ?? "")")
        #expect(pe.configPath == root + "/run/cloudbios/config/cloudbios.yaml" && pe.configSource == url)
        #expect(try Files.readString(root + "/run/cloudbios/config/cloudbios.yaml") == ConfigServer.config)
        #expect(pe.hostname == "fetched-over-the-net")
    }

    @Test(.timeLimit(.minutes(1))) func anUntrustedCertificateIsRefusedAtOnce() throws {
        let server = try ConfigServer()
        for (url, says) in [("https://localhost:\(server.httpsPort)/cloudbios.yaml", "issuer is unknown"),
                            ("https://127.0.0.1:\(server.httpsPort)/cloudbios.yaml", "name in the certificate does not match")] {
            let (pe, root, seconds) = boot(url, trust: url.contains("127.0.0.1") ? .authorities(server.cert) : .system)
            defer { Files.removeTree(root) }
            let e = pe.configError ?? ""
            #expect(e.hasPrefix("cannot download the config from \(url): TLS handshake failed") && e.contains(says), "\(e)")
            #expect(pe.configPath == nil && pe.hostname == "cloudbios")
            #expect(!Files.exists(root + "/run/cloudbios/config/cloudbios.yaml"))
            #expect(seconds < 5, "a refused certificate is final: \(seconds) s")
        }
        // https that redirects to http: refused, never fetched
        let down = "https://localhost:\(server.httpsPort)/to-http"
        let (pe, root, _) = boot(down, trust: .authorities(server.cert))
        defer { Files.removeTree(root) }
        #expect(pe.configError == "cannot download the config from \(down): redirected from https to http "
                + "(http://localhost:\(server.httpPort)/cloudbios.yaml); refused", "\(pe.configError ?? "")")
    }

    @Test(.timeLimit(.minutes(1))) func plainHTTPRetriesWhileTheServerIsBusyAndStopsAtA404() throws {
        let server = try ConfigServer()
        let flaky = "http://127.0.0.1:\(server.httpPort)/flaky"
        let (pe, root, _) = boot(flaky, trust: .system)
        defer { Files.removeTree(root) }
        #expect(pe.configError == nil && pe.hostname == "fetched-over-the-net", "\(pe.configError ?? "")")

        let missing = "http://127.0.0.1:\(server.httpPort)/nope.yaml"
        let (pe2, root2, seconds) = boot(missing, trust: .system)
        defer { Files.removeTree(root2) }
        #expect(pe2.configError == "cannot download the config from \(missing): HTTP 404 Not Found", "\(pe2.configError ?? "")")
        #expect(seconds < 5)
    }
}
