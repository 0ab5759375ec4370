import Testing
import Synchronization
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP server on 127.0.0.1 that answers each connection with a script:
/// the request (head and body) is recorded, then `answer` writes whatever it
/// likes to the socket, as slowly as it likes, and the connection is closed.
final class ScriptedServer: Sendable {
    let port: Int
    private let listener: Int32
    private let recorded = Recorded()

    final class Recorded: Sendable {
        let requests = Mutex<[String]>([])
    }

    init(_ answer: @escaping @Sendable (_ request: String, _ socket: Int32) -> Void) throws {
        listener = try syscall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let l = listener
        try withUnsafeMutablePointer(to: &addr) { a in
            try a.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                try syscall("bind") { bind(l, p, len) }
                try syscall("getsockname") { getsockname(l, p, &len) }
            }
        }
        try syscall("listen") { listen(l, 16) }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let recorded = recorded
        startThread {
            while true {
                let c = accept(l, nil, nil)
                if c < 0 { return }
                startThread {
                    let request = ScriptedServer.readRequest(c)
                    recorded.requests.withLock { $0.append(request) }
                    answer(request, c)
                    close(c)
                }
            }
        }
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// The requests received so far, in order.
    var requests: [String] { recorded.requests.withLock { $0 } }

    /// The head, then as much body as its Content-Length says.
    static func readRequest(_ c: Int32) -> String {
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        func complete() -> Bool {
            let text = String(decoding: got, as: UTF8.self)
            guard let end = text.firstRange(of: "\r\n\r\n") else { return false }
            let length = text[..<end.lowerBound].split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: " ")) } ?? 0
            return text.utf8.count - text.utf8.distance(from: text.startIndex, to: end.upperBound) >= length
        }
        while !complete() {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            got += buf[0..<n]
        }
        return String(decoding: got, as: UTF8.self)
    }
}

/// Writes all of `text` (or bytes) to a socket; false once the peer is gone.
@discardableResult
func put(_ c: Int32, _ text: String) -> Bool { put(c, Array(text.utf8)) }
@discardableResult
func put(_ c: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(c, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return false }
        off += n
    }
    return true
}

@Suite struct HTTPClientTests {
    static let payload = [UInt8]((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) })

    func url(_ server: ScriptedServer, _ path: String) throws(NetError) -> HTTPURL {
        try HTTPURL(parsing: "http://127.0.0.1:\(server.port)\(path)")
    }

    @Test func streamsABodyThroughOneBoundedBuffer() throws {
        let server = try ScriptedServer { _, c in
            put(c, "HTTP/1.1 200 OK\r\nContent-Length: \(Self.payload.count)\r\n\r\n")
            for i in stride(from: 0, to: Self.payload.count, by: 100_000) { put(c, Array(Self.payload[i..<min(i + 100_000, Self.payload.count)])) }
        }
        let client = HTTPClient(userAgent: "cloudbios-test", readSize: 64 << 10)
        let exchange = try client.open(HTTPRequest("GET", url(server, "/img?x=1")))
        #expect(exchange.head.status == 200)
        var got: [UInt8] = []
        var largest = 0
        let n = try exchange.readBody(limit: 1 << 30) { got += $0; largest = max(largest, $0.count) }
        #expect(n == Int64(Self.payload.count) && got == Self.payload)
        #expect(largest <= 64 << 10 + 4096, "slices of at most the read buffer: \(largest)")
        let request = try #require(server.requests.first)
        #expect(request.hasPrefix("GET /img?x=1 HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\nUser-Agent: cloudbios-test\r\n"))
        #expect(request.contains("Connection: close\r\n"))
    }

    @Test func postsABodyAndReadsChunkedAndUntilCloseAnswers() throws {
        let server = try ScriptedServer { request, c in
            if request.hasPrefix("POST /chunked") {
                put(c, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in ["4\r\nab", "cd\r", "\n6;x=y\r\n efghi\r\n", "0\r\nX-Trailer: t\r\n", "\r\n"] {
                    put(c, piece)
                    usleep(20_000)
                }
            } else {
                put(c, "HTTP/1.0 200 OK\r\n\r\nuntil the end")
            }
        }
        let client = HTTPClient()
        let posted = try client.fetch(HTTPRequest("POST", url(server, "/chunked"), headers: [HTTPField("Content-Type", "application/json")],
                                                  body: Array("{\"a\":1}".utf8)))
        #expect(posted.status == 201 && posted.body == Array("abcd efghi".utf8))
        #expect(server.requests.first?.contains("Content-Length: 7\r\n") == true)
        #expect(server.requests.first?.hasSuffix("\r\n\r\n{\"a\":1}") == true)
        #expect(try client.fetch(HTTPRequest("GET", url(server, "/"))).body == Array("until the end".utf8))
    }

    @Test func interimAnswersAreSkipped() throws {
        let server = try ScriptedServer { _, c in
            put(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
        let r = try HTTPClient().fetch(HTTPRequest("GET", url(server, "/")))
        #expect(r.status == 200 && r.body == Array("ok".utf8))
    }

    @Test func redirectsAreFollowedWithinTheirBound() throws {
        let server = try ScriptedServer { request, c in
            let path = request.split(separator: " ")[1]
            switch path {
            case "/dir/a": put(c, "HTTP/1.1 302 Found\r\nLocation: b?q=1\r\nContent-Length: 0\r\n\r\n")
            case "/dir/b?q=1": put(c, "HTTP/1.1 301 Moved\r\nLocation: /c\r\n\r\n")
            case "/c": put(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            case "/nowhere": put(c, "HTTP/1.1 307 Temporary\r\nContent-Length: 0\r\n\r\n")
            case "/ftp": put(c, "HTTP/1.1 302 Found\r\nLocation: ftp://x/y\r\n\r\n")
            default: put(c, "HTTP/1.1 302 Found\r\nLocation: \(path)\r\n\r\n")
            }
        }
        let r = try HTTPClient(redirects: 5).fetch(HTTPRequest("GET", url(server, "/dir/a")))
        #expect(r.status == 200 && r.body == Array("done".utf8) && r.url.target == "/c")
        #expect(throws: NetError.tooManyRedirects(1)) { try HTTPClient(redirects: 1).fetch(HTTPRequest("GET", url(server, "/dir/a"))) }
        #expect(throws: NetError.tooManyRedirects(5)) { try HTTPClient(redirects: 5).fetch(HTTPRequest("GET", url(server, "/loop"))) }
        #expect(throws: NetError.redirectWithoutLocation(307)) { try HTTPClient(redirects: 5).fetch(HTTPRequest("GET", url(server, "/nowhere"))) }
        #expect(throws: NetError.badRedirect("ftp://x/y")) { try HTTPClient(redirects: 5).fetch(HTTPRequest("GET", url(server, "/ftp"))) }
        // not asked to follow, or not a GET: the redirect is the answer
        #expect(try HTTPClient().fetch(HTTPRequest("GET", url(server, "/dir/a"))).header("location") == "b?q=1")
        #expect(try HTTPClient(redirects: 5).fetch(HTTPRequest("POST", url(server, "/dir/a"))).status == 302)
    }

    @Test(.timeLimit(.minutes(1))) func silenceTimesOutAndDribblingMeetsTheDeadline() throws {
        let server = try ScriptedServer { request, c in
            if request.hasPrefix("GET /silent") { usleep(3_000_000); return }
            put(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in 0..<1000 where put(c, "x") { usleep(50_000) }
        }
        var t0 = Clock.monotonic()
        #expect(throws: NetError.timedOut(0.5)) { try HTTPClient(timeout: 0.5).fetch(HTTPRequest("GET", url(server, "/silent"))) }
        #expect(Clock.monotonic() - t0 < 1.5)
        t0 = Clock.monotonic()
        #expect(throws: NetError.deadline) {
            // a read timeout well above the 50 ms between bytes, so only the deadline can end it
            try HTTPClient(timeout: 3).fetch(HTTPRequest("GET", url(server, "/dribble")), deadline: .after(1))
        }
        #expect(Clock.monotonic() - t0 < 2.5)
        #expect(NetError.timedOut(0.5).description == "the server sent nothing for 0.5 s")
        #expect(NetError.timedOut(5).description == "the server sent nothing for 5 s")
    }

    @Test func bodiesOverTheLimitFailBeforeTheSinkSeesThem() throws {
        let server = try ScriptedServer { request, c in
            switch request.split(separator: " ")[1] {
            case "/length": put(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n"); usleep(2_000_000)
            case "/close": put(c, "HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "z", count: 5000))
            default: put(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + String(repeating: "y", count: 2048) + "\r\n1000\r\n")
            }
        }
        for (path, error) in [("/length", NetError.tooLarge(limit: 4096, chunk: nil)), ("/close", .tooLarge(limit: 4096, chunk: nil)),
                              ("/chunked", .tooLarge(limit: 4096, chunk: 4096))] {
            let exchange = try HTTPClient().open(HTTPRequest("GET", url(server, path)))
            var seen = 0
            #expect(throws: error, "\(path)") { try exchange.readBody(limit: 4096) { seen += $0.count } }
            #expect(seen <= 4096, "\(path)")
        }
        #expect(NetError.tooLarge(limit: 10, chunk: 9223372036854775807).description
                == "a chunk of 9223372036854775807 bytes makes it larger than 10 bytes")
    }

    @Test func brokenServersFailWithWhatWentWrong() throws {
        let server = try ScriptedServer { request, c in
            switch request.split(separator: " ")[1] {
            case "/close": return
            case "/short": put(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            case "/ssh": put(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
            case "/endless-head":
                put(c, "HTTP/1.1 200 OK\r\n")
                for _ in 0..<100 where put(c, "X-Pad: " + String(repeating: "p", count: 1000) + "\r\n") {}
            case "/bad-chunk": put(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-10\r\nxx")
            default: put(c, "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n")
            }
        }
        let client = HTTPClient(timeout: 5)
        func get(_ path: String) throws(NetError) -> HTTPResponse { try client.fetch(HTTPRequest("GET", url(server, path))) }
        #expect(throws: NetError.noAnswer) { try get("/close") }
        #expect(throws: NetError.truncated(announced: 100)) { try get("/short") }
        #expect(throws: NetError.badStatusLine("SSH-2.0-OpenSSH_9.2")) { try get("/ssh") }
        #expect(throws: NetError.malformedHead) { try get("/endless-head") }
        #expect(throws: NetError.chunked(.badSize("-10"))) { try get("/bad-chunk") }
        #expect(throws: NetError.badContentLength("-5")) { try get("/negative") }
    }

    @Test func connectFailuresNameTheHostAndTheReason() throws {
        // a port nobody listens on: bound, then closed
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) == 0 && getsockname(s, $0, &len) == 0 }
        }
        close(s)
        let port = Int(UInt16(bigEndian: addr.sin_port))
        #expect(throws: NetError.connect(host: "127.0.0.1", port: port, errno: ECONNREFUSED)) {
            try HTTPClient().fetch(HTTPRequest("GET", HTTPURL(parsing: "http://127.0.0.1:\(port)/")))
        }
        #expect(NetError.connect(host: "::1", port: 9, errno: ECONNREFUSED).description == "cannot connect to [::1]:9: Connection refused")
        #expect(throws: NetError.resolve("no-such-host.invalid")) {
            try HTTPClient().fetch(HTTPRequest("GET", HTTPURL(parsing: "http://no-such-host.invalid/")))
        }
    }
}

/// https against a real TLS server (python3's ssl with a throwaway
/// certificate for `localhost`): each kind of trust, and no way back to
/// plain http.
@Suite(.serialized) struct HTTPSClientTests {
    @Test(.timeLimit(.minutes(1))) func trustDecidesWhichCertificatesAreAccepted() throws {
        let dir = "/tmp/cb-https-client-\(getpid())"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        let gen = try Launcher("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/key.pem",
                                                    "-out", "\(dir)/cert.pem", "-days", "1", "-subj", "/CN=localhost",
                                                    "-addext", "subjectAltName=DNS:localhost"]).run()
        try #require(gen.status == 0, "\(gen.output)")
        let plain = try ScriptedServer { _, c in put(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain") }
        let server = try Launcher("/usr/bin/python3", ["-c", """
            import http.server, ssl, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    if self.path == "/down":
                        self.send_response(302)
                        self.send_header("Location", "http://localhost:" + sys.argv[4] + "/x")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    body = b"secure " + self.path.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *a):
                    pass
            s = http.server.HTTPServer(("127.0.0.1", 0), H)
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.load_cert_chain(sys.argv[1], sys.argv[2])
            s.socket = c.wrap_socket(s.socket, server_side=True)
            open(sys.argv[3], "w").write(str(s.server_address[1]))
            s.serve_forever()
            """, "\(dir)/cert.pem", "\(dir)/key.pem", "\(dir)/port", "\(plain.port)"]).spawn()
        defer { kill(server, SIGKILL); _ = Launcher.wait(server) }
        var port: Int?
        for _ in 0..<100 where port == nil {
            port = Files.readTrimmed("\(dir)/port").flatMap { Int($0) }
            if port == nil { usleep(50_000) }
        }
        let p = try #require(port)
        func get(_ host: String, _ path: String, _ trust: TLSTrust, redirects: Int = 0) throws(NetError) -> String {
            let r = try HTTPClient(trust: trust, timeout: 10, redirects: redirects)
                .fetch(HTTPRequest("GET", HTTPURL(parsing: "https://\(host):\(p)\(path)")))
            return String(decoding: r.body, as: UTF8.self)
        }
        let cert = "\(dir)/cert.pem"
        #expect(try get("localhost", "/a", .authorities(cert)) == "secure /a")
        #expect(try get("127.0.0.1", "/b", .pinned(cert)) == "secure /b")
        #expect(try get("127.0.0.1", "/c", .none) == "secure /c")
        func refusal(_ host: String, _ trust: TLSTrust) -> String {
            do { _ = try get(host, "/", trust); return "accepted" } catch { return error.description }
        }
        let unknown = refusal("localhost", .system)
        #expect(unknown.hasPrefix("TLS handshake failed") && unknown.contains("issuer is unknown"), "\(unknown)")
        let wrongName = refusal("127.0.0.1", .authorities(cert))
        #expect(wrongName.contains("name in the certificate does not match"), "\(wrongName)")
        let missing = refusal("localhost", .authorities("\(dir)/none.pem"))
        #expect(missing == "cannot load CA certificate \(dir)/none.pem", "\(missing)")
        #expect(throws: NetError.redirectToHTTP("http://localhost:\(plain.port)/x")) {
            try get("localhost", "/down", .authorities(cert), redirects: 5)
        }
        #expect(plain.requests.isEmpty)
    }
}
