import Testing
import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// `images: [{url: https://…}]`: fetched over TLS (GnuTLS), with the server's
/// certificate and name verified.
@Suite struct HTTPSDownloadTests {
    @Test(.timeLimit(.minutes(1))) func httpsImagesAreVerifiedAndFetched() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let www = "\(dir)/www"
        try Files.makeDirectories(www)
        let payload = [UInt8]((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        try Files.writeAtomically("\(www)/blob.img", payload)
        let gen = try Launcher("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/key.pem",
                                                    "-out", "\(dir)/cert.pem", "-days", "1", "-subj", "/CN=localhost",
                                                    "-addext", "subjectAltName=DNS:localhost"]).run()
        try #require(gen.status == 0, "\(gen.output)")
        let port = 20000 + Int((getpid() &+ 7919) % 20000)
        let server = try Launcher("/usr/bin/python3", ["-c", """
            import functools, http.server, ssl, sys
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
            s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), h)
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            c.load_cert_chain(sys.argv[3], sys.argv[4])
            s.socket = c.wrap_socket(s.socket, server_side=True)
            s.serve_forever()
            """, www, "\(port)", "\(dir)/cert.pem", "\(dir)/key.pem"]).spawn()
        defer { kill(server, SIGKILL); _ = Launcher.wait(server) }

        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.trustFile = "\(dir)/cert.pem"
        let m = try VMManager(options: o)
        var src = ImageSource(name: "blob")
        src.url = "https://localhost:\(port)/blob.img"
        src.sha256 = try sha256File("\(www)/blob.img")
        var failures: [String] = ["not tried"]
        for _ in 0..<50 {   // the server needs a moment to listen
            failures = await m.importImages([src], baseDirectory: dir)
            if failures.isEmpty { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(try Files.read("\(dir)/images/blob") == payload)

        // the certificate names localhost, not 127.0.0.1: refused
        var byIP = src
        byIP.name = "by-ip"
        byIP.url = "https://127.0.0.1:\(port)/blob.img"
        let f1 = await m.importImages([byIP], baseDirectory: dir)
        #expect(f1.count == 1 && f1[0].contains("TLS handshake failed"), "\(f1)")
        #expect(!Files.exists("\(dir)/images/by-ip"))

        // without the CA (the system's trust store only): refused
        var o2 = VMManagerOptions(stateDir: "\(dir)/second")
        o2.nat = .user
        let untrusting = try VMManager(options: o2)
        let f2 = await untrusting.importImages([src], baseDirectory: dir)
        #expect(f2.count == 1 && f2[0].contains("TLS handshake failed"), "\(f2)")
        #expect(await untrusting.images().isEmpty)

        // a 404 over TLS is reported as such
        var missing = src
        missing.name = "missing"
        missing.url = "https://localhost:\(port)/nope.img"
        missing.sha256 = nil
        #expect(await m.importImages([missing], baseDirectory: dir).first?.contains("404") == true)
    }
}
