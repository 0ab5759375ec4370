import Testing
import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// Snapshots of the tiny guest under real QEMU (TCG): a RAM revert keeps
/// the same QEMU running; a disks-only revert of a running VM (no agent
/// there: crash-consistent) powers it off, reverts the disk and starts it
/// again; a VM busy with a snapshot refuses to stop meanwhile.
@Suite(.serialized) struct SnapshotLifecycleTests {
    func wait(_ m: VMManager, _ t: TaskInfo) async -> TaskInfo {
        for _ in 0..<1200 {
            if let x = m.tasks.task(t.id), x.state == .succeeded || x.state == .failed { return x }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        return m.tasks.task(t.id)!
    }

    @Test(.timeLimit(.minutes(3))) func ramAndDiskRevertsOfARunningVM() async throws {
        let dir = Guest.stateDir()
        defer {
            if let t = Files.readTrimmed("\(dir)/run/snap/qemu.pid"), let pid = Int32(t) { kill(pid, SIGKILL) }
            Files.removeTree(dir)
        }
        let guest = try Guest.build()
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        let m = try VMManager(options: o)
        _ = try await Guest.upload(m, name: "tiny-kernel", from: guest.kernel)
        _ = try await Guest.upload(m, name: "tiny-initrd", from: guest.initrd)
        var spec = Guest.tinySpec("snap")
        spec.disks = [DiskSpec(id: "root", size: 16 << 20)]
        _ = try await m.create(spec)
        let pid = try #require(try await m.start("snap").pid)

        let ram = await wait(m, try await m.startSnapshot("snap", snapshot: "ram", memory: true))
        #expect(ram.state == .succeeded, "\(ram.message)")
        let disks = await wait(m, try await m.startSnapshot("snap", snapshot: "disks", memory: false))
        #expect(disks.state == .succeeded && disks.message.contains("crash-consistent"), "\(disks.message)")
        #expect(try await m.snapshots("snap").record("disks")?.parent == "ram")

        let back = await wait(m, try await m.startRevert("snap", snapshot: "ram"))
        #expect(back.state == .succeeded, "\(back.message)")
        #expect(try await m.vm("snap").pid == pid)   // the same QEMU goes on
        #expect(try await m.vm("snap").state == .running)

        let revert = try await m.startRevert("snap", snapshot: "disks")
        // busy meanwhile: no stop, no second snapshot
        await #expect(throws: VMError.self) { _ = try await m.perform(.stop, on: "snap") }
        await #expect(throws: VMError.self) { _ = try await m.startSnapshot("snap", snapshot: "x", memory: false) }
        let done = await wait(m, revert)
        #expect(done.state == .succeeded && done.message.contains("started again"), "\(done.message)")
        let after = try await m.vm("snap")
        #expect(after.state == .running && after.pid != pid)
        #expect(try await m.snapshots("snap").current == "disks")
        _ = try await m.stop("snap")
    }
}
