import Testing
import Config
import Platform
@testable import VMManager

/// VMs name images from the store: the API refuses names that are not there;
/// config VMs whose images failed to import are kept and say what they lack.
@Suite struct MissingImageTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        return try VMManager(options: o)
    }

    func spec(_ name: String) -> VMSpec {
        var s = VMSpec(name: name)
        s.memory = 128
        s.kernel = "k"
        s.initrd = "i"
        s.network = .none
        return s
    }

    @Test func createAndUpdateRefuseImagesNotInTheStore() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let src = "\(dir)/src"
        try Files.makeDirectories(src)
        try Files.writeAtomically("\(src)/k", "kernel")
        let m = try manager(dir)
        var k = ImageSource(name: "k")
        k.file = "k"
        #expect(await m.importImages([k], baseDirectory: src).isEmpty)

        await #expect(throws: VMError.invalid("needs image 'i', which is not in the image store")) { try await m.create(spec("a")) }
        #expect(await m.list().isEmpty)
        #expect(!Files.exists("\(dir)/vms/a.json"))
        for (field, value) in [("cdrom", "c.iso"), ("disk", "base.qcow2")] {
            var s = spec("a")
            s.initrd = nil
            if field == "cdrom" { s.cdrom = value } else { s.disks = [.blank(size: 1 << 20), .image(value)] }
            await #expect(throws: VMError.invalid("needs image '\(value)', which is not in the image store")) { try await m.create(s) }
        }
        var s = spec("a")
        s.initrd = nil
        s.cdrom = "x"
        s.disks = [.image("y")]
        await #expect(throws: VMError.invalid("needs images 'x', 'y', which are not in the image store")) { try await m.create(s) }

        // with every image present it is created; an update naming a missing image is refused and changes nothing
        s = spec("a")
        s.initrd = nil
        #expect(try await m.create(s).state == .stopped)
        var changed = s
        changed.cdrom = "nope"
        await #expect(throws: VMError.invalid("needs image 'nope', which is not in the image store")) { try await m.update("a", changed) }
        #expect(try await m.vm("a").spec == s)
        changed.cdrom = "k"
        #expect(try await m.update("a", changed).spec.cdrom == "k")
    }

    @Test func configVMWithAFailedImageIsKeptWithAMessage() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let src = "\(dir)/src"
        try Files.makeDirectories(src)
        try Files.writeAtomically("\(src)/k", "kernel")
        let m = try manager(dir)
        var k = ImageSource(name: "k")
        k.file = "k"
        var i = ImageSource(name: "i")
        i.file = "gone.img"   // does not exist: the import fails
        let failures = await m.importImages([k, i], baseDirectory: src)
        #expect(failures.count == 1)

        var auto = spec("cfg")
        auto.autostart = true
        let applied = await m.applyConfig([auto])
        #expect(applied.count == 1 && applied[0].contains("needs image 'i'"))
        let st = try await m.vm("cfg")
        #expect(st.state == .stopped)
        let msg = try #require(st.message)
        #expect(msg.contains("needs image 'i', which is not in the image store"), "\(msg)")
        #expect(msg.contains("gone.img does not exist"), "\(msg)")

        // autostart does not start it, and nothing crashes: it stays stopped with its message
        await m.autostart()
        #expect(try await m.vm("cfg").state == .stopped)
        await #expect(throws: VMError.self) { try await m.start("cfg") }
        #expect(try await m.vm("cfg").message?.contains("needs image 'i'") == true)

        // once the image is there, the message goes
        try Files.writeAtomically("\(src)/gone.img", "initrd")
        #expect(await m.importImages([i], baseDirectory: src).isEmpty)
        #expect(try await m.vm("cfg").message == nil)
    }
}
