import Testing
import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// What a chatty guest or an interrupted write can leave on disk.
@Suite(.serialized) struct DiskUseTests {
    @Test(.timeLimit(.minutes(2))) func serialLogsRotatePastTheirLimit() async throws {
        let dir = Guest.stateDir()
        defer {
            if let t = Files.readTrimmed("\(dir)/run/chatty/qemu.pid"), let pid = Int32(t) { kill(pid, SIGKILL) }
            Files.removeTree(dir)
        }
        let guest = try Guest.build()
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        o.serialLogLimit = 8 << 10
        let m = try VMManager(options: o)
        _ = try await Guest.upload(m, name: "tiny-kernel", from: guest.kernel)
        _ = try await Guest.upload(m, name: "tiny-initrd", from: guest.initrd)
        var spec = Guest.tinySpec("chatty")
        spec.append = "console=ttyS0 vga=0x344"   // the whole kernel log on the serial console
        spec.network = .none
        _ = try await m.create(spec)
        _ = try await m.start("chatty")
        let p = m.paths("chatty")

        // under the limit nothing moves
        await m.rotateSerialLogs()
        #expect(!Files.exists(p.serialLogRotated))
        var size: Int64 = 0
        for _ in 0..<600 where size <= o.serialLogLimit {
            try await Task.sleep(nanoseconds: 50_000_000)
            size = Files.size(p.serialLog) ?? 0
        }
        try #require(size > o.serialLogLimit, "the guest wrote only \(size) bytes")
        await m.rotateSerialLogs()
        let rotated = Files.size(p.serialLogRotated) ?? 0
        #expect(rotated >= size)
        // QEMU writes on in a new serial.log, which the API serves
        #expect(try await Guest.waitForSerial(m, "chatty", "CLOUDBIOS-GUEST-READY", timeout: 60))
        #expect((Files.size(p.serialLog) ?? 0) < rotated + 8 << 10)
        #expect(try await m.serialLogPath("chatty") == p.serialLog)
        _ = try await m.stop("chatty")
    }

    @Test func interruptedWritesAreCleanedAtStart() throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        // a pid above pid_max never runs; this process does
        let dead = "4194305", alive = "\(getpid())"
        for d in ["vms", "images/.sha256", "images/.incoming", "disks/web1", "tls"] { try Files.makeDirectories("\(dir)/\(d)") }
        let leftovers = ["vms/web1.json.tmp.\(dead)", "images/.sha256/debian.tmp.\(dead)", "images/.incoming/debian.3fa9c",
                         "disks/web1/efivars.fd.tmp.\(dead)", "tls/key.pem.tmp.\(dead)", "sessions.tmp.\(dead)"]
        let kept = ["vms/web2.json.tmp.\(alive)", "vms/web1.json", "images/debian.tmp.\(dead)", "disks/web1/disk0.qcow2"]
        for f in leftovers + kept { try Files.writeAtomically("\(dir)/\(f)", "x") }
        _ = try VMManager(options: VMManagerOptions(stateDir: dir))
        for f in leftovers { #expect(!Files.exists("\(dir)/\(f)"), "\(f) is left") }
        // a writer still running keeps its file; an image named like a temp file is an image
        for f in kept { #expect(Files.exists("\(dir)/\(f)"), "\(f) was removed") }
    }
}
