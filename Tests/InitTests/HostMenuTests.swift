#if canImport(Glibc)
import Glibc
#endif
import Platform
import Testing
@testable import Init

@Suite struct HostMenuTests {
    func type(_ m: inout HostMenu, _ s: String) -> [HostMenu.Action] {
        var out: [HostMenu.Action] = []
        for b in s.utf8 { if let a = m.feed(b) { out.append(a) } }
        return out
    }

    @Test func passwordFormNeedsTwoEqualLongPasswords() {
        var m = HostMenu()
        #expect(type(&m, "1\rsecret-1\rsecret-2\r").isEmpty)
        #expect(m.render(status: "").contains("The two passwords differ"))
        _ = type(&m, "x")  // any key leaves the message
        #expect(type(&m, "1\rshort\rshort\r").isEmpty)
        _ = type(&m, "x")
        // the default user is admin; backspace edits
        #expect(type(&m, "1\rlong-enough!\u{7f}\rlong-enough\r") == [.setPassword(user: "admin", password: "long-enough")])
        #expect(type(&m, "1\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}ops\rlong-enough\rlong-enough\r") == [.setPassword(user: "ops", password: "long-enough")])
    }

    @Test func secretsAreNeverShown() {
        var m = HostMenu()
        _ = type(&m, "1\rhunter22")
        let screen = m.render(status: "CloudBIOS\n")
        #expect(!screen.contains("hunter22") && screen.contains("********"))
    }

    @Test func networkFormChecksAddressesAndSubnet() {
        var m = HostMenu()
        m.defaultInterface = "ens3"
        #expect(type(&m, "2\r\r\r\r") == [.network(interface: "ens3", address: "dhcp", gateway: nil, dns: [])])
        #expect(type(&m, "2\r192.0.2.10/24\r192.0.2.1\r192.0.2.53 9.9.9.9\r")
                == [.network(interface: "ens3", address: "192.0.2.10/24", gateway: "192.0.2.1", dns: ["192.0.2.53", "9.9.9.9"])])
        for bad in ["2\r192.0.2.300/24\r\r\r", "2\r192.0.2.10\r\r\r", "2\r192.0.2.10/24\r198.51.100.1\r\r", "2\r192.0.2.10/24\r\rnot-an-ip\r"] {
            var n = HostMenu()
            #expect(type(&n, bad).isEmpty, "\(bad)")
            #expect(n.render(status: "").contains("nothing was changed"), "\(bad)")
        }
    }

    @Test func escapeCancelsAndConfirmationsNeedYes() {
        var m = HostMenu()
        #expect(type(&m, "4\radm\u{1b}").isEmpty)
        #expect(m.render(status: "").contains(HostMenu.menuLines[0]))
        #expect(type(&m, "5\rno\r").isEmpty)
        _ = type(&m, "x")
        #expect(type(&m, "5yes\r") == [.reboot])
        #expect(type(&m, "6YES\r") == [.powerOff])
        #expect(type(&m, "3") == [.showSetupCode])
        #expect(type(&m, "4\rpw-of-admin\r") == [.shell(user: "admin", password: "pw-of-admin")])
    }

    @Test func screenFitsEightyByTwentyFive() {
        var m = HostMenu()
        let status = (1...40).map { "status line \($0) " + String(repeating: "x", count: 100) }.joined(separator: "\n")
        for keys in ["", "2", "1\r"] {
            _ = type(&m, keys)
            let lines = m.render(status: status, width: 80, height: 24).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count == 24)
            #expect(lines.allSatisfy { $0.count <= 80 })
        }
    }
}

@Suite struct FirstRunStatusTests {
    @Test func statusScreenShowsTheSetupCodeAndControllersWithoutADriver() {
        let s = StatusInfo(version: "1", hostname: "h", addresses: [("eth0", "10.0.0.5")], setupCode: "ABCD-EFGH",
                           noDriver: ["PCI 0000:00:05.0 [1000:0012] SCSI controller"])
        let text = StatusScreen.render(s)
        #expect(text.contains("https://10.0.0.5:8443/"))
        #expect(text.contains("FIRST RUN") && text.contains("    ABCD-EFGH"))
        #expect(text.contains("Devices without a driver") && text.contains("[1000:0012] SCSI controller"))
        #expect(!StatusScreen.render(StatusInfo(version: "1", hostname: "h")).contains("FIRST RUN"))
    }

    @Test func usbStorageIsPendingUntilItsDiskAppears() throws {
        let root = "/tmp/cb-usb-\(getpid())"
        defer { _ = try? Files.removeTree(root) }
        let intf = root + "/bus/usb/devices/2-1:1.0"
        try Files.makeDirectories(intf)
        try Files.writeAtomically(intf + "/bInterfaceClass", "08\n")
        #expect(PE.usbStoragePending(sys: root))
        try Files.makeDirectories(intf + "/host2/target2:0:0/2:0:0:0/block/sda")
        #expect(!PE.usbStoragePending(sys: root))
        // a keyboard is not storage
        try Files.makeDirectories(root + "/bus/usb/devices/1-1:1.0")
        try Files.writeAtomically(root + "/bus/usb/devices/1-1:1.0/bInterfaceClass", "03\n")
        #expect(!PE.usbStoragePending(sys: root))
    }
}
