import Config
import Testing
@testable import Apps

/// The config file's ownership of its apps: what applying an entry means.
@Suite struct AppConfigLedgerTests {
    func spec(_ name: String, cmd: [String] = []) -> AppSpec {
        var e = AppEntry(name: name, image: "127.0.0.1:5000/busybox:1")
        e.cmd = cmd
        e.ports = [(18080, 8080)]
        e.env = ["B": "2", "A": "1"]
        e.restart = .always
        return AppSpec(entry: e)
    }

    @Test func newChangedUnchangedAndRemovedThroughTheAPI() {
        var ledger = AppConfigLedger()
        let web = spec("web")
        #expect(ledger.decide(web, existing: nil) == .create)
        #expect(ledger.decide(web, existing: web) == .record)
        #expect(ledger.decide(web, existing: spec("web", cmd: ["sh"])) == .update)
        ledger.applied["web"] = AppConfigLedger.fingerprint(web)
        // as applied: the app as it is (or its absence, removed through the API) stands
        #expect(ledger.decide(web, existing: nil) == .keep)
        #expect(ledger.decide(web, existing: spec("web", cmd: ["other"])) == .keep)
        // the entry changed: applied again
        #expect(ledger.decide(spec("web", cmd: ["sh"]), existing: web) == .update)
        #expect(ledger.decide(spec("web", cmd: ["sh"]), existing: nil) == .create)
        // an entry removed from the file is forgotten: added back, it is new
        ledger.retain(only: [])
        #expect(ledger.decide(web, existing: nil) == .create)
    }

    @Test func theEntryIsTheSpec() throws {
        let s = spec("web", cmd: ["httpd", "-f"])
        #expect(s.name == "web" && s.cmd == ["httpd", "-f"] && s.ports == [AppPort(host: 18080, guest: 8080)])
        #expect(s.env == ["A": "1", "B": "2"] && s.restart == .always && s.memory == 256 && s.cpus == 1)
        // the same spec as the API's body gives
        #expect(try AppSpec.parse(s.json) == s)
    }
}
