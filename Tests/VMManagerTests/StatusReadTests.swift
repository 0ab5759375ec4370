import Testing
import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// Statuses read at once (`listNow`, `vmNow`, from any thread, without the
/// actor) follow every change the manager makes, as soon as it returns.
@Suite(.serialized) struct StatusReadTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        o.shutdownTimeout = 3
        return try VMManager(options: o)
    }

    /// Reads on a thread of its own, as the HTTP server's threads do.
    func offActor<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { k in spawnThread { k.resume(with: Result { try body() }) } }
    }

    @Test func definitionsImportsAndDeletionsShowAtOnce() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let src = "\(dir)/src"
        try Files.makeDirectories(src)
        try Files.writeAtomically("\(src)/k", "kernel")
        let m = try manager(dir)
        #expect(try await offActor { m.listNow() }.isEmpty)

        // a config VM whose image failed to import says so…
        var k = ImageSource(name: "k")
        k.file = "k"
        var i = ImageSource(name: "i")
        i.file = "gone.img"
        #expect(await m.importImages([k, i], baseDirectory: src).count == 1)
        var s = VMSpec(name: "cfg")
        s.memory = 128
        s.kernel = "k"
        s.initrd = "i"
        s.network = .none
        #expect(await m.applyConfig([s]).count == 1)
        var st = try await offActor { try m.vmNow("cfg") }
        #expect(st.state == .stopped)
        #expect(st.message?.hasPrefix("cannot start: needs image 'i', which is not in the image store (import failed: ") == true,
                "\(st.message ?? "nil")")
        // …and that it is downloading once a download is announced
        var url = ImageSource(name: "i")
        url.url = "http://127.0.0.1:9/i"
        await m.announceDownloads([url])
        #expect(try await offActor { try m.vmNow("cfg") }.message?.hasSuffix("(downloading: 'i')") == true)

        // the image arrives: no message
        try Files.writeAtomically("\(src)/gone.img", "initrd")
        #expect(await m.importImages([i], baseDirectory: src).isEmpty)
        #expect(try await offActor { try m.vmNow("cfg") }.message == nil)

        // an edit shows in the next read, as a new VM does, in name order
        s.memory = 192
        _ = try await m.update("cfg", s)
        st = try await offActor { try m.vmNow("cfg") }
        #expect(st.spec.memory == 192)
        var b = VMSpec(name: "another")
        b.network = .none
        _ = try await m.create(b)
        #expect(try await offActor { m.listNow() }.map(\.spec.name) == ["another", "cfg"])
        let listed = await m.list()
        #expect(try await offActor { m.listNow() } == listed)

        // gone at once when deleted
        try await m.delete("cfg")
        await #expect(throws: VMError.notFound(name: "cfg")) { try await offActor { try m.vmNow("cfg") } }
        #expect(try await offActor { m.listNow() }.map(\.spec.name) == ["another"])

        // a new manager on the same state dir reads the definitions it loads
        let again = try manager(dir)
        #expect(try await offActor { again.listNow() }.map(\.spec.name) == ["another"])
    }

    @Test(.timeLimit(.minutes(2))) func aRunningVMReadsItsProcessAtOnce() async throws {
        let guest = try Guest.build()
        let dir = Guest.stateDir()
        defer {
            if let t = Files.readTrimmed("\(dir)/run/tiny/qemu.pid"), let pid = Int32(t) { kill(pid, SIGKILL) }
            Files.removeTree(dir)
        }
        let m = try manager(dir)
        _ = try await Guest.upload(m, name: "tiny-kernel", from: guest.kernel)
        _ = try await Guest.upload(m, name: "tiny-initrd", from: guest.initrd)
        _ = try await m.create(Guest.tinySpec("tiny"))
        let started = try await m.start("tiny")
        let pid = try #require(started.pid)

        var st = try await offActor { try m.vmNow("tiny") }
        #expect(st.state == .running && st.pid == pid && st.accel == started.accel)
        #expect((st.memoryUsedMiB ?? 0) > 0)
        #expect(st.uptimeSeconds != nil)
        // a CPU share needs two readings half a second apart
        try await Task.sleep(nanoseconds: 700_000_000)
        st = try await offActor { try m.vmNow("tiny") }
        let cpu = try #require(st.cpuPercent)
        #expect(cpu >= 0)

        _ = try await m.perform(.pause, on: "tiny")
        #expect(try await offActor { try m.vmNow("tiny") }.state == .paused)
        _ = try await m.perform(.stop, on: "tiny")
        st = try await offActor { try m.vmNow("tiny") }
        #expect(st.state == .stopped && st.pid == nil && st.cpuPercent == nil && st.memoryUsedMiB == nil)

        // QEMU killed behind the manager's back: crashed, with why
        let again = try await m.start("tiny")
        kill(try #require(again.pid), SIGKILL)
        var state = VMState.running
        for _ in 0..<100 {
            state = try await offActor { try m.vmNow("tiny") }.state
            if state == .crashed { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(state == .crashed)
        #expect(try await offActor { try m.vmNow("tiny") }.message?.contains("QEMU exited unexpectedly") == true)
    }

    @Test func cpuShareIsWorkedOutOverHalfASecondPerRun() {
        let c = CPUSampler()
        #expect(c.percent("a", generation: 1, cpuSeconds: 1.0, at: 10.0) == nil)
        #expect(c.percent("a", generation: 1, cpuSeconds: 1.125, at: 10.25) == nil)   // too soon
        #expect(c.percent("a", generation: 1, cpuSeconds: 1.25, at: 10.5) == 50)
        #expect(c.percent("a", generation: 1, cpuSeconds: 2.0, at: 10.75) == 50)     // kept until the next half second
        #expect(c.percent("a", generation: 1, cpuSeconds: 1.0, at: 11.0) == 0)       // never negative
        #expect(c.percent("b", generation: 1, cpuSeconds: 5.0, at: 11.0) == nil)     // each VM its own
        #expect(c.percent("a", generation: 2, cpuSeconds: 0.125, at: 11.25) == nil)  // a new run starts over
        c.forget("a")
        #expect(c.percent("a", generation: 2, cpuSeconds: 0.25, at: 12.0) == nil)
    }
}
