import Testing
@testable import Install
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// GRUB's per-VM entries written as the VMs change.
@Suite struct BootMenuTests {
    func scratch() throws -> String {
        let d = "/tmp/cb-bootmenu-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(d + "/boot/grub")
        return d
    }

    @Test func theStickFileHasOneEntryPerVMBootingItOnTheDisplay() {
        let t = BootMenu.stickText(vms: ["web", "db"])
        #expect(t.hasPrefix(BootMenu.stickHeader))
        #expect(t.split(separator: "\n").filter { $0.hasPrefix("menuentry ") }.count == 2)
        #expect(t.contains("menuentry \"CloudBIOS: dual-run web\" --id \"vm-web\" --hotkey=1 {\n    linux ($cbroot)/boot/vmlinuz $cbargs cloudbios.display=web\n    initrd ($cbroot)/boot/initramfs.img\n}"))
        #expect(t.contains("--id \"vm-db\" --hotkey=2 {"))
        // with VMs to choose from the menu is shown; without, the ISO's short hidden countdown stays
        #expect(t.contains("set timeout_style=menu\nset timeout=\(BootMenu.menuSeconds)\n"))
        #expect(BootMenu.stickText(vms: []) == BootMenu.stickHeader + "\n")
        // the tenth VM has no key of its own
        let ten = BootMenu.stickText(vms: (0..<10).map { "vm\($0)" })
        #expect(ten.contains("--id \"vm-vm8\" --hotkey=9 {") && ten.contains("--id \"vm-vm9\" {"))
    }

    @Test func writesOnlyWhenTheSetChangesAndLeavesAHandWrittenFileAlone() throws {
        let d = try scratch()
        defer { Files.removeTree(d) }
        let menu = BootMenu(.stick(file: d + "/boot-menu.cfg"))
        #expect(try menu.sync(vms: ["a"], display: nil))
        #expect(try !menu.sync(vms: ["a"], display: nil))
        #expect(try Files.readString(d + "/boot-menu.cfg") == BootMenu.stickText(vms: ["a"]))
        #expect(try menu.sync(vms: ["a", "b"], display: nil))
        #expect(try Files.readString(d + "/boot-menu.cfg").contains("cloudbios.display=b"))
        // a name that is no VM name never reaches GRUB
        #expect(!menu.text(vms: ["ok", "x\" {\n linux /evil"], display: nil).contains("evil"))

        try Files.writeAtomically(d + "/boot-menu.cfg", "menuentry \"mine\" { true }\n")
        let fresh = BootMenu(.stick(file: d + "/boot-menu.cfg"))
        #expect(throws: InstallError.self) { try fresh.sync(vms: ["a"], display: nil) }
        #expect(try Files.readString(d + "/boot-menu.cfg") == "menuentry \"mine\" { true }\n")
    }

    @Test func anInstalledSystemsGrubCfgIsRenderedAgainWithTheDisplayVMAsDefault() throws {
        let d = try scratch()
        defer { Files.removeTree(d) }
        let menu = BootMenu(.installed(root: d, systemUUID: "1234-abcd"))
        #expect(try menu.sync(vms: ["web", "db"], display: "db"))
        let cfg = try Files.readString(d + "/boot/grub/grub.cfg")
        #expect(cfg.contains("search --no-floppy --fs-uuid --set=root 1234-abcd"))
        #expect(cfg.contains("set default=\"vm-db\""))
        #expect(cfg.contains("--id \"vm-web\"") && cfg.contains("cloudbios.display=web"))
        #expect(cfg.contains(GrubMenu.installedArgs))
        #expect(try menu.sync(vms: ["web"], display: nil))
        let after = try Files.readString(d + "/boot/grub/grub.cfg")
        #expect(!after.contains("vm-db") && after.contains("set default=\"host\""))
    }
}
