import Testing
import Config
import Platform
@testable import VMManager

/// The config file's VMs against the API's edits, across daemon restarts (a
/// new manager over the same state dir is what a restart sees).
@Suite struct ConfigOwnershipTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        return try VMManager(options: o)
    }

    func entry(_ name: String, memory: Int = 256) -> VMSpec {
        var s = VMSpec(name: name)
        s.memory = memory
        s.network = .none
        return s
    }

    @Test func anAPIEditLastsUntilTheFileEntryChanges() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let file = [entry("web", memory: 256)]
        #expect(try await manager(dir).applyConfig(file).isEmpty)
        // edited through the API
        _ = try await manager(dir).update("web", entry("web", memory: 512))
        // restarts with the same file keep the edit
        for _ in 0..<2 {
            let m = try manager(dir)
            #expect(await m.applyConfig(file).isEmpty)
            #expect(try await m.vm("web").spec.memory == 512)
        }
        // the file's entry changes: it wins
        let m = try manager(dir)
        #expect(await m.applyConfig([entry("web", memory: 1024)]).isEmpty)
        #expect(try await m.vm("web").spec.memory == 1024)
    }

    @Test func anAPIDeletionLastsUntilTheFileEntryChanges() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let file = [entry("gone"), entry("kept")]
        _ = try await manager(dir).applyConfig(file)
        try await manager(dir).delete("gone")
        let again = try manager(dir)
        _ = await again.applyConfig(file)
        #expect(await again.list().map(\.spec.name) == ["kept"])
        // a changed entry brings it back
        let changed = try manager(dir)
        _ = await changed.applyConfig([entry("gone", memory: 300), entry("kept")])
        #expect(await changed.list().map(\.spec.name) == ["gone", "kept"])
        #expect(try await changed.vm("gone").spec.memory == 300)
    }

    @Test func anEntryTakenOutAndPutBackIsNew() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        _ = try await manager(dir).applyConfig([entry("a")])
        try await manager(dir).delete("a")
        // out of the file (the VM was deleted already), then back as it was
        _ = try await manager(dir).applyConfig([])
        let m = try manager(dir)
        _ = await m.applyConfig([entry("a")])
        #expect(await m.list().map(\.spec.name) == ["a"])
    }

    @Test func aStateDirFromBeforeTheLedgerTakesTheFileOnce() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        // a definition the API made, and no ledger: the file's entry applies
        _ = try await manager(dir).create(entry("old", memory: 512))
        #expect(!Files.exists("\(dir)/\(ConfigLedger.fileName)"))
        let m = try manager(dir)
        _ = await m.applyConfig([entry("old", memory: 256)])
        #expect(try await m.vm("old").spec.memory == 256)
        #expect(ConfigLedger.load("\(dir)/\(ConfigLedger.fileName)").applied.keys.sorted() == ["old"])
        // an unreadable ledger is the same as none
        try Files.writeAtomically("\(dir)/\(ConfigLedger.fileName)", "{not json")
        _ = try await manager(dir).update("old", entry("old", memory: 640))
        let again = try manager(dir)
        _ = await again.applyConfig([entry("old", memory: 256)])
        #expect(try await again.vm("old").spec.memory == 256)
    }

    @Test func decisions() {
        var ledger = ConfigLedger()
        let a = entry("a")
        #expect(ledger.decide(a, existing: nil) == .create)
        #expect(ledger.decide(a, existing: a) == .record)
        #expect(ledger.decide(a, existing: entry("a", memory: 999)) == .update)
        ledger.applied["a"] = ConfigLedger.fingerprint(a)
        #expect(ledger.decide(a, existing: nil) == .keep)
        #expect(ledger.decide(a, existing: entry("a", memory: 999)) == .keep)
        #expect(ledger.decide(entry("a", memory: 1), existing: entry("a", memory: 999)) == .update)
        ledger.retain(only: ["b"])
        #expect(ledger.applied.isEmpty)
    }
}
