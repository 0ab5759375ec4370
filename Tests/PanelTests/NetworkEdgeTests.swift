#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Testing
@testable import Panel

/// What a stranger on the network can send the panel before and after
/// logging in: paths, bodies, login attempts, WebSocket frames, TLS.
@Suite(.serialized) struct NetworkEdgeTests {
    @Test func nulInAPathIsRefused() async throws {
        let s = try TestServer(tag: "nul")
        let (token, _) = try await s.login()
        let auth = ["Authorization": "Bearer \(token)"]
        // MHD would hand over "/index.html", "/api/v1/health", … cut at the NUL
        for (method, path) in [("GET", "/index.html%00.css"), ("GET", "/api/v1/health%00"), ("GET", "/api/v1/vms/tiny%00x"),
                               ("GET", "/css/panel.css%00/../../etc/passwd"), ("POST", "/api/v1/login%00")] {
            let r = try await s.http.request(method, path, headers: auth)
            #expect(r.status == 400 && r.error == "path contains a NUL byte", "\(method) \(path): \(r.status) \(r.text)")
        }
        // other escapes still decode, and the query still reaches the route
        #expect(try await s.http.request("GET", "/css/panel%2Ecss").text == "body{}")
        #expect(try await s.http.request("GET", "/api/v1/health?x=%00").status == 200)
        #expect(Router.route(method: "GET", path: "/api/v1/vms/a\u{0}b") == .failure(RouteError(400, "path contains a NUL byte")))
    }

    @Test func bodiesBeforeLoginAreSmall() async throws {
        let s = try TestServer(tag: "prelogin")
        let big = #"{"user":"admin","password":""# + String(repeating: "x", count: PanelAPI.preAuthLimit) + #""}"#
        let login = try await s.http.json("POST", "/api/v1/login", big)
        #expect(login.status == 413 && login.error == "request body is larger than 8192 bytes", "\(login.status) \(login.text)")
        let setup = try await s.http.json("POST", "/api/v1/setup", big)
        #expect(setup.status == 413, "\(setup.text)")

        // without a Content-Length (chunked), the cap holds while reading
        let http = s.http
        let chunked = try await offPool { () -> TestHTTP.Reply in
            let fd = try http.connect()
            defer { close(fd) }
            TestHTTP.send(fd, Array("POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
            for _ in 0..<4 { TestHTTP.send(fd, Array("1000\r\n".utf8) + [UInt8](repeating: 0x20, count: 4096) + Array("\r\n".utf8)) }
            TestHTTP.send(fd, Array("0\r\n\r\n".utf8))
            return TestHTTP.parse(TestHTTP.readAll(fd))
        }
        #expect(chunked.status == 413, "\(chunked.text)")

        // a normal login still works; logged in, JSON bodies keep their 1 MiB
        let (token, _) = try await s.login()
        let spec = #"{"name":"big","memory":256,"append":""# + String(repeating: "a", count: 100_000) + #""}"#
        let create = try await s.http.json("POST", "/api/v1/vms", spec, headers: ["Authorization": "Bearer \(token)"])
        #expect(create.status != 413 && create.status < 500, "\(create.status) \(create.text)")
        let huge = try await s.http.json("POST", "/api/v1/vms", String(repeating: " ", count: PanelAPI.jsonLimit + 1),
                                         headers: ["Authorization": "Bearer \(token)"])
        #expect(huge.status == 413 && huge.error == "request body is larger than 1048576 bytes")
    }

    @Test func failedLoginsFromOneAddressDoNotLockTheUserOutElsewhere() async throws {
        let dir = makeTempDir("throttle")
        defer { Files.removeTree(dir) }
        let api = PanelAPI(backend: FakeBackend(dir: dir), users: [PanelUser(name: "admin", passwordHash: TestServer.hash)],
                           tls: false, version: "t", webRoot: dir)
        func login(_ user: String, _ password: String, from ip: String) async -> Int {
            let head = RequestHead(method: "POST", path: "/api/v1/login", headers: ["Content-Type": "application/json"], clientIP: ip)
            return await api.handle(head, body: Array(#"{"user":"\#(user)","password":"\#(password)"}"#.utf8)).status
        }
        var attacker: [Int] = []
        for _ in 0..<7 { attacker.append(await login("admin", "guess", from: "203.0.113.9")) }
        #expect(attacker == [401, 401, 401, 401, 401, 429, 429])
        // the attacker's address is throttled for admin, even with the right password …
        #expect(await login("admin", "correct horse", from: "203.0.113.9") == 429)
        // … while admin logs in from anywhere else
        #expect(await login("admin", "correct horse", from: "192.0.2.20") == 200)

        // one address trying many names is throttled as an address
        var spray: [Int] = []
        for i in 0..<22 { spray.append(await login("user\(i)", "guess", from: "198.51.100.7")) }
        #expect(spray.prefix(20).allSatisfy { $0 == 401 } && spray.suffix(2) == [429, 429], "\(spray)")
        #expect(await login("admin", "correct horse", from: "198.51.100.7") == 429)
        #expect(await login("admin", "correct horse", from: "198.51.100.8") == 200)
    }

    @Test func oversizedWebSocketFramesCloseWith1009() async throws {
        let s = try TestServer(tag: "wsbig")
        let (token, _) = try await s.login()
        await s.backend.addVM("tiny")
        let sock = s.dir + "/vnc.sock"
        let echo = try EchoServer(path: sock)
        defer { echo.stop() }
        await s.backend.setVNCPath(sock)
        let http = s.http
        for claimed in [UInt64(WebSocket.Decoder.rfbMaxPayload + 1), 4 << 30, 1 << 62] {
            let (head, frame) = try await offPool { () -> (String, WebSocket.Frame?) in
                let fd = try http.connect()
                defer { close(fd) }
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                TestHTTP.send(fd, wsHandshake(http.port, "/api/v1/vms/tiny/console?token=\(token)"))
                let head = readHead(fd)
                // a binary frame header claiming `claimed` bytes, and a few of them
                var header: [UInt8] = [0x82, 0xFF]
                for i in (0..<8).reversed() { header.append(UInt8((claimed >> (UInt64(i) * 8)) & 0xff)) }
                TestHTTP.send(fd, header + [1, 2, 3, 4] + [UInt8](repeating: 0x55, count: 1000))
                var dec = WebSocket.Decoder(requireMask: false)
                return (head, try readFrame(fd, &dec))
            }
            #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
            #expect(frame?.opcode == .close && frame.map { Array($0.payload.prefix(2)) } == [0x03, 0xF1], "\(claimed): \(String(describing: frame))")
        }
        // a frame of exactly the cap still goes through to the VNC side
        echo.stop()
        let sink = try SinkServer(path: sock)
        let payload = [UInt8](repeating: 0x42, count: WebSocket.Decoder.rfbMaxPayload)
        let pong = try await offPool { () -> WebSocket.Frame? in
            let fd = try http.connect()
            defer { close(fd) }
            TestHTTP.send(fd, wsHandshake(http.port, "/api/v1/vms/tiny/console?token=\(token)"))
            _ = readHead(fd)
            TestHTTP.send(fd, WebSocket.encode(.init(opcode: .binary, payload: payload), mask: [9, 9, 9, 9]))
            TestHTTP.send(fd, WebSocket.encode(.init(opcode: .ping, payload: [1]), mask: [9, 9, 9, 9]))
            var dec = WebSocket.Decoder(requireMask: false)
            return try readFrame(fd, &dec)
        }
        #expect(pong == .init(opcode: .pong, payload: [1]))
        #expect(sink.received() == payload.count)
    }

    /// `openssl s_client` against the panel's self-signed TLS: what it
    /// negotiates, or nil when the handshake is refused.
    func negotiate(_ port: Int, _ args: [String]) async throws -> String? {
        let r = try await offPool {
            try Launcher("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-brief"] + args).run()
        }
        guard r.status == 0 else { return nil }
        let protocolLine = r.output.split(separator: "\n").first { $0.hasPrefix("Protocol version:") }
        let cipherLine = r.output.split(separator: "\n").first { $0.hasPrefix("Ciphersuite:") }
        guard let protocolLine, let cipherLine else { return nil }
        return protocolLine.split(separator: " ").last! + " " + cipherLine.split(separator: " ").last!
    }

    @Test func tlsOffersOnly12And13WithAEAD() async throws {
        let s = try TestServer(tls: .selfSigned, tag: "tlspolicy")
        let port = s.server.port
        // the client offers the old versions and ciphers (security level 0),
        // so a refusal is the server's
        let legacy = "DEFAULT:@SECLEVEL=0"
        #expect(try await negotiate(port, ["-tls1", "-cipher", legacy]) == nil)
        #expect(try await negotiate(port, ["-tls1_1", "-cipher", legacy]) == nil)
        for cbc in ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"] {
            #expect(try await negotiate(port, ["-tls1_2", "-cipher", cbc + ":@SECLEVEL=0"]) == nil, "\(cbc)")
        }
        #expect(try await negotiate(port, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]) == "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256")
        #expect(try await negotiate(port, ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"]) == "TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305")
        #expect(try await negotiate(port, ["-tls1_3"])?.hasPrefix("TLSv1.3 TLS_") == true)
        #expect(try await negotiate(port, ["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"]) == "TLSv1.3 TLS_AES_128_GCM_SHA256")
    }
}

/// A Unix-socket server that reads one connection to its end and counts
/// the bytes (stands in for QEMU's VNC taking client input).
final class SinkServer: @unchecked Sendable {
    private let lock = Lock()
    private var count = 0
    private var finished = false

    init(path: String) throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0, listen(fd, 1) == 0 else { throw SystemError("bind \(path)", errno: currentErrno()) }
        spawnThread { [self] in
            let c = accept(fd, nil, nil)
            close(fd)
            var buf = [UInt8](repeating: 0, count: 65536)
            while c >= 0 {
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                lock.withLock { count += n }
            }
            if c >= 0 { close(c) }
            lock.withLock { finished = true }
        }
    }

    /// Bytes read, once the connection has ended (waits up to 10 s for that).
    func received() -> Int {
        for _ in 0..<1000 where !lock.withLock({ finished }) { usleep(10_000) }
        return lock.withLock { count }
    }
}
