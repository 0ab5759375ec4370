import Testing
import Config
import Platform
import Synchronization
@testable import VMManager

/// Followers of the VM set hear of every change of it, whichever path made
/// it, and of nothing else.
@Suite struct VMSetTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        return try VMManager(options: o)
    }

    func spec(_ name: String, memory: Int = 256, display: Bool = false) -> VMSpec {
        var s = VMSpec(name: name)
        s.memory = memory
        s.network = .none
        s.display = display
        return s
    }

    @Test func everyChangeOfTheSetIsToldInOrderAndNothingElse() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        _ = try await m.create(spec("b"))
        let heard = Mutex<[VMSet]>([])
        await m.followVMSet { set in heard.withLock { $0.append(set) } }
        // the set now, at once
        #expect(heard.withLock { $0 } == [VMSet(names: ["b"], display: nil)])
        _ = try await m.create(spec("a"))
        // an edit that leaves the names and the display alone is not a change
        _ = try await m.update("a", spec("a", memory: 512))
        _ = try await m.update("b", spec("b", display: true))
        // the config file's VMs come the same way
        #expect(await m.applyConfig([spec("c")]).isEmpty)
        try await m.delete("a")
        #expect(heard.withLock { $0 } == [
            VMSet(names: ["b"], display: nil),
            VMSet(names: ["a", "b"], display: nil),
            VMSet(names: ["a", "b"], display: "b"),
            VMSet(names: ["a", "b", "c"], display: "b"),
            VMSet(names: ["b", "c"], display: "b"),
        ])
    }
}
