import Testing
@testable import Apps

@Suite struct ManifestTests {
    static let d1 = "sha256:" + String(repeating: "1", count: 64)
    static let d2 = "sha256:" + String(repeating: "2", count: 64)
    static let d3 = "sha256:" + String(repeating: "3", count: 64)

    static func index(_ platforms: [(String, String, String?)]) -> [UInt8] {
        let entries = platforms.enumerated().map { i, p in
            let variant = p.2.map { #", "variant": "\#($0)""# } ?? ""
            return #"{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:\#(String(repeating: "\(i + 1)", count: 64))", "size": 100, "platform": {"os": "\#(p.0)", "architecture": "\#(p.1)"\#(variant)}}"#
        }
        return Array(#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [\#(entries.joined(separator: ","))]}"#.utf8)
    }

    @Test func anIndexYieldsTheLinuxAMD64Manifest() throws {
        let body = Self.index([("linux", "arm64", "v8"), ("linux", "amd64", nil), ("windows", "amd64", nil)])
        guard case .index(let entries) = try ManifestDocument.parse(body, contentType: MediaType.ociIndex) else {
            Issue.record("not an index"); return
        }
        #expect(entries.map(\.platform) == ["linux/arm64/v8", "linux/amd64", "windows/amd64"])
        #expect(ManifestDocument.pickLinuxAMD64(entries)?.digest == Self.d2)
    }

    @Test func aV1VariantIsPreferredOverLaterOnes() throws {
        let body = Self.index([("linux", "amd64", "v3"), ("linux", "amd64", "v1")])
        guard case .index(let entries) = try ManifestDocument.parse(body, contentType: nil) else { Issue.record("not an index"); return }
        #expect(ManifestDocument.pickLinuxAMD64(entries)?.digest == Self.d2)
    }

    @Test func anIndexWithoutLinuxAMD64PicksNothing() throws {
        let body = Self.index([("linux", "arm64", nil), ("linux", "s390x", nil)])
        guard case .index(let entries) = try ManifestDocument.parse(body, contentType: MediaType.dockerList) else {
            Issue.record("not an index"); return
        }
        #expect(ManifestDocument.pickLinuxAMD64(entries) == nil)
        #expect("\(AppError.wrongPlatform(image: "x:1", platforms: entries.compactMap(\.platform)))"
            == "image 'x:1' has no linux/amd64 variant (it has: linux/arm64, linux/s390x)")
    }

    @Test func aManifestListsItsConfigAndLayers() throws {
        let body = Array(#"""
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "\#(Self.d1)", "size": 7},
         "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "\#(Self.d2)", "size": 10},
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "\#(Self.d3)", "size": 20}]}
        """#.utf8)
        guard case .manifest(let m) = try ManifestDocument.parse(body, contentType: "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8") else {
            Issue.record("not a manifest"); return
        }
        #expect(m.config.digest == Self.d1)
        #expect(m.layers.map(\.digest) == [Self.d2, Self.d3])
        #expect(m.layers.map(\.size) == [10, 20])
    }

    @Test(arguments: [
        #"{"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+json"}"#,
        #"{"config": {"digest": "sha256:12", "size": 1}, "layers": []}"#,
        #"{"config": {"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"}, "layers": []}"#,
        #"{"config": {"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": 1}, "layers": [{"mediaType": "application/x-foreign", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": 1}]}"#,
        "not json", "[1]",
    ])
    func refusesWhatIsNotAnImage(_ text: String) {
        #expect(throws: AppError.self) { try ManifestDocument.parse(Array(text.utf8), contentType: nil) }
    }

    @Test func theImageConfigSaysHowToRun() throws {
        let c = try ImageConfig.parse(Array(#"""
        {"os": "linux", "architecture": "amd64",
         "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin", "A=b=c"],
                    "WorkingDir": "/srv", "User": "1000:1000", "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}}}
        """#.utf8))
        #expect(c.entrypoint == ["/bin/sh", "-c"])
        #expect(c.cmd == ["echo hi"])
        #expect(c.env == ["PATH=/bin", "A=b=c"])
        #expect(c.workingDir == "/srv")
        #expect(c.user == "1000:1000")
        #expect(c.exposedPorts == ["53/udp", "8080/tcp"])
        let bare = try ImageConfig.parse(Array(#"{"os": "linux", "architecture": "arm64"}"#.utf8))
        #expect(bare.entrypoint.isEmpty && bare.cmd.isEmpty && bare.workingDir.isEmpty)
        #expect(bare.architecture == "arm64")
    }

    @Test func bearerChallengesAreRead() {
        let p = Registry.bearerChallenge(#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#)
        #expect(p?["realm"] == "https://auth.docker.io/token")
        #expect(p?["service"] == "registry.docker.io")
        #expect(p?["scope"] == "repository:library/busybox:pull")
        #expect(Registry.bearerChallenge(#"Basic realm="x""#) == nil)
        #expect(Registry.percentEncoded("repository:a/b:pull") == "repository%3Aa%2Fb%3Apull")
    }

    @Test func whiteoutsNameWhatTheyRemove() {
        #expect(RootFS.whiteout("etc/.wh.passwd")! == ("etc", "passwd"))
        #expect(RootFS.whiteout(".wh.tmp")! == ("", "tmp"))
        #expect(RootFS.whiteout("var/cache/.wh..wh..opq")! == ("var/cache", nil))
        #expect(RootFS.whiteout("etc/passwd") == nil)
        #expect(RootFS.whiteout("etc/.wh.") == nil)
        #expect(RootFS.normalized("./a/b/") == "a/b")
        #expect(RootFS.normalized("/abs//x") == "abs/x")
        #expect(RootFS.normalized("a/../../etc") == nil)
    }
}
