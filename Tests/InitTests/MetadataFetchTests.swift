import Testing
import Synchronization
@testable import Init
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A cloud metadata service on 127.0.0.1 (python3), one cloud per path
/// prefix: /ec2 wants an IMDSv2 token, /v1 refuses tokens (IMDSv1 only),
/// /gce wants `Metadata-Flavor: Google`, /azure `Metadata: true` and serves
/// base64, /none has no user-data at all. Every request is logged.
final class MetadataServer {
    let dir: String
    let pid: pid_t
    let port: Int
    static let config = "version: 1\nhostname: from-user-data\n"

    init() throws {
        dir = "/tmp/cb-metadata-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        pid = try Launcher("/usr/bin/python3", ["-c", """
            import base64, http.server, os, sys
            d = sys.argv[1]
            config = sys.argv[2].encode()
            class H(http.server.BaseHTTPRequestHandler):
                def do_PUT(self):
                    self.note()
                    if self.path == "/ec2/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                        return self.answer(200, b"tok-123")
                    self.answer(403 if self.path.startswith("/v1/") else 404, b"")
                def do_GET(self):
                    self.note()
                    p, h = self.path, self.headers
                    if p == "/ec2/latest/user-data":
                        return self.answer(200, config) if h.get("X-aws-ec2-metadata-token") == "tok-123" else self.answer(401, b"")
                    if p == "/v1/latest/user-data":
                        return self.answer(200, config)
                    if p == "/gce/computeMetadata/v1/instance/attributes/user-data":
                        return self.answer(200, config) if h.get("Metadata-Flavor") == "Google" else self.answer(403, b"")
                    if p == "/azure/metadata/instance/compute/userData?api-version=2021-01-01&format=text":
                        return self.answer(200, base64.b64encode(config)) if h.get("Metadata") == "true" else self.answer(400, b"")
                    self.answer(404, b"not found")
                def note(self):
                    with open(d + "/requests", "a") as f:
                        f.write(self.command + " " + self.path + "\\n")
                def answer(self, status, body):
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *a):
                    pass
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            open(d + "/port.tmp", "w").write(str(srv.server_address[1]))
            os.rename(d + "/port.tmp", d + "/port")
            srv.serve_forever()
            """, dir, Self.config]).spawn()
        var p: Int?
        for _ in 0..<100 where p == nil {
            p = Files.readTrimmed(dir + "/port").flatMap { Int($0) }
            if p == nil { usleep(50_000) }
        }
        guard let p else { kill(pid, SIGKILL); _ = Launcher.wait(pid); throw InitError("the metadata server did not start") }
        port = p
    }

    var requests: [String] { (Files.readTrimmed(dir + "/requests") ?? "").split(separator: "\n").map(String.init) }

    deinit {
        kill(pid, SIGKILL)
        _ = Launcher.wait(pid)
        Files.removeTree(dir)
    }
}

@Suite(.serialized) struct MetadataFetchTests {
    func fetcher(_ base: String) -> MetadataFetch {
        var f = MetadataFetch()
        f.sources = MetadataSource.all(base: base, gceHost: nil)
        f.window = 3
        f.pause = 0.2
        return f
    }

    func run(_ f: MetadataFetch) -> (error: String?, found: String?, log: [String], text: String?) {
        let dest = "/tmp/cb-metadata-out-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(dest) }
        var log: [String] = []
        let r = f.fetch(to: dest) { log.append($0) }
        return (r.error, r.found, log, try? Files.readString(dest))
    }

    @Test(.timeLimit(.minutes(1))) func eachCloudsUserDataIsFoundWithItsOwnHeaders() throws {
        let server = try MetadataServer()
        let base = "http://127.0.0.1:\(server.port)"
        for (cloud, name) in [("ec2", "EC2"), ("v1", "EC2"), ("gce", "GCE"), ("azure", "Azure")] {
            let r = run(fetcher(base + "/" + cloud))
            #expect(r.error == nil, "\(cloud): \(r.error ?? "") \(r.log)")
            #expect(r.text == MetadataServer.config, "\(cloud)")
            #expect(r.found?.hasPrefix(name + " ") == true, "\(cloud): \(r.found ?? "nil")")
            #expect(r.log.last?.hasSuffix("user-data found (\(MetadataServer.config.utf8.count) bytes)") == true, "\(r.log)")
        }
        // IMDSv2 first: the token is asked for, then sent; without one, v1
        #expect(server.requests.contains("PUT /ec2/latest/api/token"))
        let r = run(fetcher(base + "/v1"))
        #expect(r.log.contains("config: metadata: EC2: no IMDSv2 token (HTTP 403); trying IMDSv1"), "\(r.log)")
        // the sources before the one that has user-data are each logged
        let gce = run(fetcher(base + "/gce"))
        #expect(gce.log.contains { $0.hasPrefix("config: metadata: OpenStack \(base)/gce/openstack/latest/user_data: HTTP 404") }, "\(gce.log)")
    }

    @Test(.timeLimit(.minutes(1))) func noUserDataAnywhereIsFinalAtOnce() throws {
        let server = try MetadataServer()
        let t0 = Clock.monotonic()
        let r = run(fetcher("http://127.0.0.1:\(server.port)/none"))
        #expect(r.error == "no cloud metadata service has user-data for this instance")
        #expect(r.text == nil && r.found == nil)
        #expect(r.log.count == 5, "\(r.log)")   // the token, then four sources
        #expect(Clock.monotonic() - t0 < 2)
    }

    /// A TCP socket on 127.0.0.1 bound to a free port; listening (and never
    /// accepting: the kernel completes connections, nothing answers) or not.
    func localSocket(listening: Bool) -> (fd: Int32, port: Int) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        if listening { _ = listen(s, 128) }
        return (s, Int(UInt16(bigEndian: a.sin_port)))
    }

    @Test(.timeLimit(.minutes(1))) func noServiceAcceptingAConnectionIsGivenUpAfterOneRound() throws {
        // a port nothing listens on: refused at once; outside a cloud the
        // link-local address is refused, unreachable or silent the same way
        let (s, port) = localSocket(listening: false)
        close(s)
        var f = fetcher("http://127.0.0.1:\(port)")
        f.window = 30
        let t0 = Clock.monotonic()
        let r = run(f)
        #expect(Clock.monotonic() - t0 < 2, "no second round")
        #expect(r.error?.hasPrefix("no cloud metadata service accepted a connection (4 sources;") == true, "\(r.error ?? "")")
        #expect(r.text == nil && r.found == nil)
        // one line per source: the first tried, the others at the same
        // address and port not tried again
        #expect(r.log.count == 4, "\(r.log)")
        #expect(r.log.first?.hasPrefix("config: metadata: EC2 http://127.0.0.1:\(port)/latest/user-data: no answer (") == true, "\(r.log)")
        for name in ["OpenStack", "GCE", "Azure"] {
            #expect(r.log.contains { $0.hasPrefix("config: metadata: \(name) ") && $0.contains(": not tried: 127.0.0.1:\(port) accepted no connection (no answer (") }, "\(r.log)")
        }
    }

    @Test(.timeLimit(.minutes(1))) func aServiceThatAcceptsButDoesNotAnswerIsRetriedForTheWindow() throws {
        let (s, port) = localSocket(listening: true)
        defer { close(s) }
        var f = fetcher("http://127.0.0.1:\(port)")
        f.timeout = 0.2
        f.attempt = 0.4
        f.window = 1.5
        f.pause = 0.1
        let t0 = Clock.monotonic()
        let r = run(f)
        #expect(Clock.monotonic() - t0 >= 1.3)
        #expect(r.error?.hasPrefix("no cloud metadata service answered in 1 s (") == true, "\(r.error ?? "")")
        let rounds = r.log.filter { $0.hasPrefix("config: metadata: Azure ") }.count
        #expect(rounds >= 2, "\(r.log)")
        #expect(!r.log.contains { $0.contains("not tried") }, "\(r.log)")
    }

    @Test(.timeLimit(.minutes(1))) func aClosedSourceDoesNotHideAnotherAddressWithUserData() throws {
        // the link-local address refuses; GCE's name (here the server) has user-data
        let server = try MetadataServer()
        let (s, port) = localSocket(listening: false)
        close(s)
        var f = fetcher("http://127.0.0.1:\(port)")
        f.sources = MetadataSource.all(base: "http://127.0.0.1:\(port)", gceHost: "http://localhost:\(server.port)/gce")
        let r = run(f)
        #expect(r.error == nil, "\(r.error ?? "") \(r.log)")
        #expect(r.found == "GCE http://localhost:\(server.port)/gce/computeMetadata/v1/instance/attributes/user-data", "\(r.log)")
        #expect(r.text == MetadataServer.config)
    }

    static let header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

    @Test func aRouteToTheLinkLocalAddressIsReadFromTheKernelsTable() {
        let def = Self.header + "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
            + "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        let linkLocal = Self.header + "eth0\t0000FEA9\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
        let subnetOnly = Self.header + "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        let down = Self.header + "eth0\t00000000\t0202000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
        #expect(MetadataFetch.hasRoute(to: "169.254.169.254", in: def))
        #expect(MetadataFetch.hasRoute(to: "169.254.169.254", in: linkLocal))
        #expect(!MetadataFetch.hasRoute(to: "169.254.169.254", in: subnetOnly))
        #expect(MetadataFetch.hasRoute(to: "10.0.2.15", in: subnetOnly))
        #expect(!MetadataFetch.hasRoute(to: "169.254.169.254", in: down))
        #expect(!MetadataFetch.hasRoute(to: "169.254.169.254", in: Self.header))
        #expect(!MetadataFetch.hasRoute(to: "169.254.169.254", in: ""))
        #expect(MetadataFetch.ipv4("169.254.169.254") == 0xFEA9FEA9)
        #expect(MetadataFetch.ipv4("metadata.google.internal") == nil)
    }

    @Test(.timeLimit(.minutes(1))) func withoutARouteTheNetworkIsWaitedForThenGivenUp() {
        // the link-local address with no route: nothing is tried, the wait is logged once
        var f = MetadataFetch()
        f.sources = MetadataSource.all(gceHost: nil)
        f.window = 0.6
        f.routeTable = { Self.header }
        let t0 = Clock.monotonic()
        let r = run(f)
        #expect(Clock.monotonic() - t0 >= 0.5)
        #expect(r.error == "no route to 169.254.169.254 after 0 s (no network: no DHCP lease?)", "\(r.error ?? "")")
        #expect(r.log == ["config: metadata: waiting for a route to 169.254.169.254 (the network is coming up)"], "\(r.log)")
    }

    @Test(.timeLimit(.minutes(1))) func theRouteAppearingEndsTheWait() throws {
        // the route comes (DHCP); the sources are then tried (here on loopback, which needs none)
        let server = try MetadataServer()
        let calls = Mutex(0)
        var f = fetcher("http://127.0.0.1:\(server.port)/ec2")
        f.sources.append(MetadataSource(name: "probe", url: "http://169.254.169.254/"))
        f.routeTable = { calls.withLock { $0 += 1; return $0 < 3 ? Self.header : Self.header + "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" } }
        let r = run(f)
        #expect(r.error == nil, "\(r.error ?? "") \(r.log)")
        #expect(r.log.first == "config: metadata: waiting for a route to 169.254.169.254 (the network is coming up)", "\(r.log)")
        #expect(calls.withLock { $0 } == 3)
    }

    @Test func base64() {
        let d = { (s: String) in MetadataFetch.base64Decode(Array(s.utf8)).map { String(decoding: $0, as: UTF8.self) } }
        #expect(d("aGVsbG8=") == "hello")
        #expect(d("aGVsbG8") == "hello")
        #expect(d("aGVs\nbG8h") == "hell" + "o!")
        #expect(d("") == "")
        #expect(d("aGVsbG8*") == nil)
        #expect(d("aGVsbG8=x") == nil)
        #expect(d("a") == nil)
    }

    @Test(.timeLimit(.minutes(1))) func theKernelArgumentConfiguresThePEFromUserData() throws {
        let server = try MetadataServer()
        let root = OffTargetBootTests().makeRoot(cmdline: "console=ttyS0 cloudbios.config=metadata", blkid: "", files: [:])
        defer { Files.removeTree(root) }
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.metadataFetch = fetcher("http://127.0.0.1:\(server.port)/azure")
        pe.boot()
        #expect(pe.configError == nil, "\(pe.configError ?? "")")
        #expect(pe.configSource?.hasPrefix("metadata: Azure ") == true, "\(pe.configSource ?? "")")
        #expect(pe.hostname == "from-user-data")
    }
}
