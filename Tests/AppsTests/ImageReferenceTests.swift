import Testing
@testable import Apps

@Suite struct ImageReferenceTests {
    @Test(arguments: [
        ("busybox", "docker.io", "library/busybox", "latest" as String?, nil as String?),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", nil),
        ("bitnami/nginx:1", "docker.io", "bitnami/nginx", "1", nil),
        ("127.0.0.1:5000/busybox:1", "127.0.0.1:5000", "busybox", "1", nil),
        ("localhost/a/b", "localhost", "a/b", "latest", nil),
        ("ghcr.io/o-r/my_app.x:v2.0-rc1", "ghcr.io", "o-r/my_app.x", "v2.0-rc1", nil),
        ("quay.io/x/y@sha256:" + String(repeating: "ab", count: 32), "quay.io", "x/y", nil,
         "sha256:" + String(repeating: "ab", count: 32)),
        ("[::1]:5000/busybox:1", "[::1]:5000", "busybox", "1", nil),
    ])
    func parses(_ text: String, _ registry: String, _ repository: String, _ tag: String?, _ digest: String?) throws {
        let r = try ImageReference(parsing: text)
        #expect(r.registry == registry)
        #expect(r.repository == repository)
        #expect(r.tag == tag)
        #expect(r.digest == digest)
    }

    @Test func aDigestIsWhatTheManifestIsAskedBy() throws {
        let d = "sha256:" + String(repeating: "0", count: 64)
        let r = try ImageReference(parsing: "example.com/app:1@" + d)
        #expect(r.tag == "1")
        #expect(r.manifestReference == d)
        #expect(r.description == "example.com/app:1@" + d)
        #expect(try ImageReference(parsing: "busybox").description == "busybox:latest")
        #expect(try ImageReference(parsing: "docker.io/library/busybox").apiHost == "registry-1.docker.io")
    }

    @Test(arguments: [
        "", "Busybox", "busybox:", "a//b", "-a", "busybox:.x", "busybox@sha256:12",
        "busybox@md5:" + String(repeating: "0", count: 32), "a b", "reg:99999/x", "../x", "x/../y",
        "host:5000/Upper", "a/b:tag/with/slash?", "x;rm -rf /",
    ])
    func refuses(_ text: String) {
        #expect(throws: AppError.self) { try ImageReference(parsing: text) }
    }

    @Test func loopbackRegistriesAreSpokenToOverHTTP() throws {
        #expect(try ImageReference(parsing: "127.0.0.1:5000/a").isLoopback)
        #expect(try ImageReference(parsing: "localhost:5000/a").isLoopback)
        #expect(try ImageReference(parsing: "[::1]:5000/a").isLoopback)
        #expect(!(try ImageReference(parsing: "ghcr.io/a").isLoopback))
    }
}
