import Testing
import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// Real QEMU under TCG. Each test is bounded (about 60 s) and kills what it starts.
@Suite(.serialized) struct LifecycleTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        o.shutdownTimeout = 3
        return try VMManager(options: o)
    }

    /// Runs `body`, then kills any QEMU left in the state dir and removes it.
    func withStateDir(_ body: (String) async throws -> Void) async throws {
        let dir = Guest.stateDir()
        do { try await body(dir) } catch { killLeftovers(dir); throw error }
        killLeftovers(dir)
    }

    func killLeftovers(_ dir: String) {
        for vm in Files.list("\(dir)/run") {
            if let t = Files.readTrimmed("\(dir)/run/\(vm)/qemu.pid"), let pid = Int32(t) { kill(pid, SIGKILL) }
        }
        Files.removeTree(dir)
    }

    @Test(.timeLimit(.minutes(2))) func fullLifecycle() async throws {
        try await withStateDir { dir in try await fullLifecycle(dir) }
    }

    func fullLifecycle(_ dir: String) async throws {
        let guest = try Guest.build()
        let m = try manager(dir)

        let k = try await Guest.upload(m, name: "tiny-kernel", from: guest.kernel)
        let i = try await Guest.upload(m, name: "tiny-initrd", from: guest.initrd)
        #expect(k.sha256 == (try sha256File(guest.kernel)))
        #expect(i.size == Files.size(guest.initrd))
        #expect(await m.images().map(\.name) == ["tiny-initrd", "tiny-kernel"])

        let created = try await m.create(Guest.tinySpec("tiny"))
        #expect(created.state == .stopped)
        #expect(Files.exists("\(dir)/vms/tiny.json"))
        await #expect(throws: VMError.exists(name: "tiny")) { try await m.create(Guest.tinySpec("tiny")) }

        let started = try await m.start("tiny")
        #expect(started.state == .running)
        #expect(started.accel == "tcg")   // KVM hangs on these machines; the probe falls back
        let pid = try #require(started.pid)
        for f in ["qmp.sock", "vnc.sock", "serial.log", "qemu.pid"] { #expect(Files.exists("\(dir)/run/tiny/\(f)"), "missing \(f)") }
        #expect(try await Guest.waitForSerial(m, "tiny", "CLOUDBIOS-GUEST-READY", timeout: 60))
        #expect(try await Guest.waitForSerial(m, "tiny", "CLOUDBIOS-GUEST-PAINTED", timeout: 20))

        // the screen is the guest's blue
        let png = try await m.screenshot("tiny")
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
        let ppm = try await m.screenshot("tiny", format: "ppm")
        let share = try #require(ppmShare(ppm, r: 0x1e, g: 0x90, bl: 0xff))
        #expect(share.width == 1024 && share.height == 768)

        // in use: no delete/update of the VM, no delete of its images
        await #expect(throws: VMError.self) { try await m.delete("tiny") }
        await #expect(throws: VMError.self) { try await m.update("tiny", Guest.tinySpec("tiny")) }
        await #expect(throws: ImageError.conflict("image 'tiny-kernel' is in use by tiny")) { try await m.deleteImage("tiny-kernel") }

        #expect(try await m.perform(.pause, on: "tiny").state == .paused)
        #expect(try await m.vm("tiny").state == .paused)
        await #expect(throws: VMError.self) { try await m.perform(.pause, on: "tiny") }
        #expect(try await m.perform(.resume, on: "tiny").state == .running)
        #expect(try await m.perform(.reset, on: "tiny").state == .running)

        let metrics = await m.metrics()
        #expect(metrics.contains("cloudbios_vm_state{vm=\"tiny\",state=\"running\"} 1"))
        #expect(metrics.contains("cloudbios_vm_memory_rss_bytes{vm=\"tiny\"}"))

        // ACPI shutdown: this guest has no ACPI daemon, so it is powered off after the timeout
        #expect(try await m.perform(.shutdown, on: "tiny").state == .running)
        var stoppedState = VMState.running
        for _ in 0..<100 {
            stoppedState = try await m.vm("tiny").state
            if stoppedState == .stopped { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(stoppedState == .stopped)
        #expect(!processAlive(pid))
        await #expect(throws: VMError.notRunning(name: "tiny")) { try await m.perform(.stop, on: "tiny") }
        #expect(!Files.exists("\(dir)/run/tiny/qmp.sock"))
        #expect(Files.exists("\(dir)/run/tiny/serial.log"))   // kept for reading after stop

        try await m.delete("tiny")
        #expect(await m.list().isEmpty)
        #expect(!Files.exists("\(dir)/vms/tiny.json"))
        try await m.deleteImage("tiny-kernel")
        #expect(await m.images().map(\.name) == ["tiny-initrd"])
        #expect(share.share > 0.9, "only \(share.share) of \(share.width)x\(share.height) is #1E90FF")
    }

    @Test(.timeLimit(.minutes(2))) func reattachAfterManagerRestartAndCrashDetection() async throws {
        try await withStateDir { dir in try await reattach(dir) }
    }

    func reattach(_ dir: String) async throws {
        let guest = try Guest.build()
        var pid: Int32 = 0
        do {
            let first = try manager(dir)
            _ = try await Guest.upload(first, name: "tiny-kernel", from: guest.kernel)
            _ = try await Guest.upload(first, name: "tiny-initrd", from: guest.initrd)
            _ = try await first.create(Guest.tinySpec("keep"))
            pid = try #require(try await first.start("keep").pid)
            _ = try await first.perform(.pause, on: "keep")
            await first.detach()   // as a daemon that exits (kill -9 closes the socket the same way)
        }
        // a new manager (a restarted daemon) finds the VM still running, in its state
        let second = try manager(dir)
        await second.reattach()
        let s = try await second.vm("keep")
        #expect(s.pid == pid)
        #expect(s.state == .paused)
        #expect(processAlive(pid))
        #expect(try await second.perform(.resume, on: "keep").state == .running)

        // QEMU killed behind our back: crashed, with a message
        kill(pid, SIGKILL)
        var state = VMState.running
        for _ in 0..<100 {
            state = try await second.vm("keep").state
            if state == .crashed { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(state == .crashed)
        #expect(try await second.vm("keep").message?.contains("unexpectedly") == true)
        #expect(!Files.exists("\(dir)/run/keep/qemu.pid"))

        // a QEMU that died while no manager ran leaves its pidfile: crashed,
        // and the stale run dir is cleaned
        try Files.makeDirectories("\(dir)/run/keep")
        try Files.writeAtomically("\(dir)/run/keep/qemu.pid", "999999\n")
        let third = try manager(dir)
        await third.reattach()
        #expect(try await third.vm("keep").state == .crashed)
        #expect(try await third.vm("keep").message == "QEMU exited while the daemon was not running")
        #expect(!Files.exists("\(dir)/run/keep/qemu.pid"))
        // a clean exit (no pidfile left) is simply stopped
        let fourth = try manager(dir)
        await fourth.reattach()
        #expect(try await fourth.vm("keep").state == .stopped)
    }

    @Test func hostileSpecsAndImageNames() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        for name in ["../x", "a,b", String(repeating: "a", count: 80), "", "UPPER"] {
            await #expect(throws: VMError.self) { try await m.create(VMSpec(name: name)) }
        }
        var s = VMSpec(name: "ok")
        s.memory = -5
        await #expect(throws: VMError.self) { try await m.create(s) }
        s.memory = 1 << 40
        await #expect(throws: VMError.self) { try await m.create(s) }
        s.memory = 256
        s.cdrom = "../../etc/shadow"
        await #expect(throws: VMError.self) { try await m.create(s) }
        s.cdrom = "x,file=/etc/passwd"
        await #expect(throws: VMError.self) { try await m.create(s) }
        for bad in ["../etc", ".hidden", "a/b", "a,b", ""] {
            await #expect(throws: ImageError.self) { _ = try await m.beginImageUpload(bad, expectedSize: 1) }
        }
        await #expect(throws: ImageError.tooLarge("image 'big' is larger than 64.0 GiB")) { _ = try await m.beginImageUpload("big", expectedSize: 1 << 40) }
        // a short upload is refused and leaves nothing behind
        let u = try await m.beginImageUpload("short", expectedSize: 10)
        try [UInt8](repeating: 1, count: 5).withUnsafeBytes { try u.write($0) }
        await #expect(throws: ImageError.self) { _ = try await u.finish() }
        #expect(await m.images().isEmpty)
        #expect(Files.list("\(dir)/images/.incoming").isEmpty)
        // a VM whose image is missing is refused
        s.cdrom = "missing.iso"
        await #expect(throws: VMError.invalid("needs image 'missing.iso', which is not in the image store")) { try await m.create(s) }
        #expect(await m.list().isEmpty)
    }

    @Test func definitionsPersistAcrossManagers() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        var spec = Guest.tinySpec("persist")
        spec.disks = [.blank(size: 1 << 30), .image("base.qcow2")]
        spec.firmware = .uefi
        spec.autostart = true
        spec.order = 3
        do { _ = try await manager(dir).create(spec, requireImages: false) }
        // stored with the ids its disks were given once
        spec.assignDiskIDs()
        #expect(spec.disks.map(\.id) == ["disk0", "disk1"])
        #expect(try await manager(dir).vm("persist").spec == spec)
    }

    @Test func configImagesImportIdempotentlyAndVerifyHashes() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let src = "\(dir)/src"
        try Files.makeDirectories(src)
        try Files.writeAtomically("\(src)/a.img", "hello")
        let m = try manager(dir)
        var a = ImageSource(name: "a")
        a.file = "a.img"
        a.sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        #expect(await m.importImages([a], baseDirectory: src).isEmpty)
        let before = try #require(Files.size("\(dir)/images/a"))
        #expect(before == 5)
        var ino1 = stat(); stat("\(dir)/images/a", &ino1)
        #expect(await m.importImages([a], baseDirectory: src).isEmpty)
        var ino2 = stat(); stat("\(dir)/images/a", &ino2)
        #expect(ino1.st_ino == ino2.st_ino)   // not copied again
        var bad = ImageSource(name: "b")
        bad.file = "a.img"
        bad.sha256 = String(repeating: "0", count: 64)
        let failures = await m.importImages([bad], baseDirectory: src)
        #expect(failures.count == 1 && failures[0].contains("sha256"))
        #expect(!Files.exists("\(dir)/images/b"))
    }
}

@Suite struct DownloadTests {
    @Test(.timeLimit(.minutes(1))) func urlImagesDownloadVerifyAndSkipWhenPresent() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let www = "\(dir)/www"
        try Files.makeDirectories(www)
        let payload = [UInt8]((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try Files.writeAtomically("\(www)/blob.img", payload)
        let port = 20000 + Int(getpid() % 20000)
        let server = try Launcher("/usr/bin/python3", ["-m", "http.server", "--bind", "127.0.0.1", "--directory", www, "\(port)"]).spawn()
        defer { kill(server, SIGKILL); _ = Launcher.wait(server) }
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        let m = try VMManager(options: o)
        var src = ImageSource(name: "blob")
        src.url = "http://127.0.0.1:\(port)/blob.img"
        src.sha256 = try sha256File("\(www)/blob.img")
        var failures: [String] = ["not tried"]
        for _ in 0..<50 {   // the server needs a moment to listen
            failures = await m.importImages([src], baseDirectory: dir)
            if failures.isEmpty { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(try Files.read("\(dir)/images/blob") == payload)
        var wrong = src
        wrong.name = "wrong"
        wrong.sha256 = String(repeating: "a", count: 64)
        let f = await m.importImages([wrong], baseDirectory: dir)
        #expect(f.count == 1 && f[0].contains("sha256"))
        #expect(!Files.exists("\(dir)/images/wrong"))
        var missing = src
        missing.name = "missing"
        missing.url = "http://127.0.0.1:\(port)/nope.img"
        missing.sha256 = nil
        #expect(await m.importImages([missing], baseDirectory: dir).first?.contains("404") == true)
        #expect(Files.list("\(dir)/images/.incoming").isEmpty)
    }
}

/// A guest that never gets past its firmware says so in its status.
@Suite(.serialized) struct FirmwareWatchTests {
    @Test(.timeLimit(.minutes(2))) func aBlankDiskIsNoBootableDevice() async throws {
        let dir = Guest.stateDir()
        defer {
            if let t = Files.readTrimmed("\(dir)/run/blank/qemu.pid"), let pid = Int32(t) { kill(pid, SIGKILL) }
            Files.removeTree(dir)
        }
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        let m = try VMManager(options: o)
        var s = VMSpec(name: "blank")
        s.memory = 64
        s.network = .none
        s.disks = [.blank(size: 1 << 20, id: "root")]
        _ = try await m.create(s)
        #expect(try await m.start("blank").state == .running)
        var message: String?
        for _ in 0..<45 {
            message = try await m.vm("blank").message
            if message?.contains("no bootable device") == true { break }
            try await Task.sleep(nanoseconds: 1_000_000_000)
        }
        #expect(message == "firmware: no bootable device (SeaBIOS found nothing to boot on the disks or the CD)")
        _ = try await m.stop("blank")
    }

    @Test func uefiFallingBackToItsShellIsNoBootableDevice() throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        try Files.makeDirectories(dir)
        try Files.writeAtomically(dir + "/serial.log", "BdsDxe: loading Boot0001\nUEFI Interactive Shell v2.2\nPress ESC in 1 seconds to skip startup.nsh\nShell> ")
        #expect(FirmwareWatch.problem(firmwareLog: dir + "/none", serialLog: dir + "/serial.log")?.contains("UEFI") == true)
        try Files.writeAtomically(dir + "/serial.log", "Booting `Debian GNU/Linux'\n")
        #expect(FirmwareWatch.problem(firmwareLog: dir + "/none", serialLog: dir + "/serial.log") == nil)
    }
}
