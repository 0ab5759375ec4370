import Testing
@testable import Install
import Disks
import Config

/// Why `POST /api/v1/install` is refused: a message and a kind, no HTTP.
@Suite struct InstallRefusalTests {
    let installer = Installer(config: CloudBIOSConfig(), configText: "version: 1\n",
                              sources: { throw InstallError.missingSource("no boot medium to install from") })
    let disks = [disk("vda", serial: "A"), withData(disk("vdb", serial: "B"))]

    func refusal(_ json: String) throws -> InstallRefusal? {
        let body = try JSONValue.parse(json)
        do { _ = try installer.startInstall(body, disks: disks); return nil } catch { return error }
    }

    @Test func eachRefusalHasItsKindAndThePlannersMessage() throws {
        let none = try #require(try refusal(#"{"disk": {"serial": "NONE"}}"#))
        #expect(none.kind == .invalid && none.description.hasPrefix("no disk matches install.disk"), "\(none)")
        let two = try #require(try refusal(#"{"disk": {"serial": "*"}}"#))
        #expect(two.kind == .conflict && two.description.contains("matches 2 disks"), "\(two)")
        let full = try #require(try refusal(#"{"disk": {"serial": "B"}}"#))
        #expect(full.kind == .conflict && full.description.hasPrefix("/dev/vdb (") && full.description.contains("is not empty"), "\(full)")
        let body = try #require(try refusal(#"{"disk": 5}"#))
        #expect(body.kind == .badRequest && body.description == "body:1:9: disk must be a mapping, not a scalar", "\(body)")
        #expect(try refusal(#"{"disk": {"serial": "A"}, "dry_run": true}"#) == nil)
        // a real install needs what it copies
        #expect(try refusal(#"{"disk": {"serial": "A"}}"#) == .sources("no boot medium to install from"))
        #expect(InstallRefusal.sources("x").kind == .conflict && InstallRefusal.busy(task: "install-1").kind == .conflict)
        #expect(InstallRefusal.busy(task: "install-1").description == "install install-1 is still running")
    }
}
