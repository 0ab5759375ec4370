import Testing
@testable import Install
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The installed system's A/B slots: GRUB's environment block, an upgrade
/// written into the slot not running, and what the next boot makes of it.
@Suite struct SlotsTests {
    func scratch() throws -> String {
        let d = "/tmp/cb-slots-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(d + "/boot/grub")
        return d
    }

    /// A system partition installed before slots: slot a's files at its
    /// root, a grub.cfg from the template that knows slots.
    func installed() throws -> SystemSlots {
        let root = try scratch()
        for f in SystemSlot.files { try Files.writeAtomically(root + "/" + f, "old \(f)\n") }
        try Files.writeAtomically(root + "/boot/grub/grub.cfg",
                                  GrubMenu.render(template: GrubMenu.builtinTemplate, systemUUID: "u", vms: [], display: nil))
        return SystemSlots(root: root)
    }

    /// A mounted-ISO look-alike holding `version`.
    func iso(_ version: String, id: String = UpgradeSource.idText) throws -> String {
        let d = try scratch()
        try Files.writeAtomically(d + "/cloudbios.id", id + "\n")
        try Files.makeDirectories(d + "/boot")
        for f in SystemSlot.files { try Files.writeAtomically(d + "/boot/" + f, "new \(f) \(version)\n") }
        try Files.writeAtomically(d + "/boot/version", version + "\n")
        return d
    }

    @Test func theEnvironmentBlockIsExactly1024BytesAndReadsBack() throws {
        var e = GrubEnv()
        e["cb_good"] = "a"
        e["cb_next"] = "b"
        e["cb_next"] = nil
        e["cb_pending"] = "b"
        let text = try e.render()
        #expect(text.utf8.count == 1024)
        #expect(text.hasPrefix("# GRUB Environment Block\ncb_good=a\ncb_pending=b\n#"))
        #expect(GrubEnv(parsing: text) == e)
        #expect(GrubEnv(parsing: text)["cb_next"] == nil)
    }

    @Test func runningSlotComesFromTheCommandLineAndIsAWithoutIt() {
        #expect(SystemSlot.running(cmdline: "console=ttyS0 cloudbios.slot=b cloudbios.trial=1\n") == .b)
        #expect(SystemSlot.running(cmdline: "console=ttyS0 cloudbios.display=x") == .a)
    }

    @Test func theMenuBootsTheGoodSlotAndTriesTheNextOnceWithPanicReboot() {
        let cfg = GrubMenu.render(template: GrubMenu.builtinTemplate, systemUUID: "u", vms: ["web"], display: "web")
        #expect(cfg.contains("set cb_next=\n        save_env cb_next"))
        #expect(cfg.contains("cloudbios.trial=1 panic=10"))
        #expect(cfg.contains("linux $cbsys/vmlinuz $cbargs cloudbios.display=web"))
        #expect(cfg.contains("if [ \"$cb_slot\" = b ]; then set cbsys=/slot-b;"))
        // the file's template says the same as the built-in one
        if let file = try? Files.readString("images/grub-disk.cfg.in") {
            #expect(file.contains("save_env cb_next") && file.contains("initrd $cbsys/initramfs.img"))
        }
    }

    @Test func anUpgradeGoesIntoTheOtherSlotVerifiedAndIsTriedOnce() throws {
        let s = try installed()
        let src = try UpgradeSource.inspect(try iso("9.9"))
        #expect(src.version == "9.9")
        var seen: [Int] = []
        try s.install(src, into: .b, running: .a) { p, _ in seen.append(p) }
        #expect(try Files.readString(s.root + "/slot-b/vmlinuz") == "new vmlinuz 9.9\n")
        #expect(try Files.readString(s.root + "/vmlinuz") == "old vmlinuz\n")      // the running slot untouched
        #expect(s.version(.b) == "9.9" && s.version(.a) == "unknown")
        #expect(seen.last == 95)
        let e = s.env()
        #expect(e["cb_next"] == "b" && e["cb_pending"] == "b" && e["cb_good"] == "a")
        #expect(Files.size(s.envPath) == 1024)
        // the running slot is never written
        #expect(throws: InstallError.self) { try s.install(src, into: .a, running: .a) { _, _ in } }
    }

    @Test func theNewSlotComingUpBecomesGoodAndOneThatDidNotIsReported() throws {
        let s = try installed()
        try s.install(try UpgradeSource.inspect(try iso("2.0")), into: .b, running: .a) { _, _ in }
        // GRUB cleared cb_next as it booted b, and b came up
        var e = s.env(); e["cb_next"] = nil; try s.writeEnv(e)
        let up = try s.settle(running: .b)
        #expect(up?.state == "booted" && up?.slot == .b)
        #expect(s.env()["cb_good"] == "b" && s.env()["cb_pending"] == nil)
        // the next upgrade goes into a; it never comes up: GRUB boots b again
        try s.install(try UpgradeSource.inspect(try iso("3.0")), into: .a, running: .b) { _, _ in }
        #expect(s.env()["cb_good"] == "b" && s.env()["cb_next"] == "a")
        e = s.env(); e["cb_next"] = nil; try s.writeEnv(e)
        let down = try s.settle(running: .b)
        #expect(down?.state == "fell-back" && down?.slot == .a)
        #expect(s.env()["cb_good"] == "b" && s.env()["cb_failed"] == "a")
        let j = s.json(running: .b, runningVersion: "x", outcome: nil)
        #expect(j["running"]?.stringValue == "b")
        #expect(j["upgrade"]?["state"]?.stringValue == "fell-back")
        #expect(j["slots"]?[0]?["version"]?.stringValue == "3.0" && j["slots"]?[0]?["failed"] == .bool(true))
    }

    @Test func aTrialGRUBCouldNotClearIsClearedByTheSlotThatCameUp() throws {
        let s = try installed()
        try s.install(try UpgradeSource.inspect(try iso("2.0")), into: .b, running: .a) { _, _ in }
        #expect(try s.settle(running: .b)?.state == "booted")
        #expect(s.env()["cb_next"] == nil && s.env()["cb_good"] == "b")
    }

    @Test func anImageThatIsNotACloudBIOSISOIsRefused() throws {
        #expect(throws: UpgradeError.self) { try UpgradeSource.inspect(try iso("1", id: "something else")) }
        let d = try iso("1")
        Files.remove(d + "/boot/cloudbios.sqfs")
        #expect(throws: UpgradeError.self) { try UpgradeSource.inspect(d) }
    }
}
