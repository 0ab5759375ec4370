/// What the local console shows once the PE is up (like Proxmox's banner).
public struct StatusInfo: Equatable, Sendable {
    public var version: String
    public var hostname: String
    public var addresses: [(interface: String, address: String)]
    public var panelPort: Int
    public var tlsFingerprint: String?
    public var configSource: String?
    public var configError: String?
    public var vms: [(name: String, state: String)]
    public var display: String?
    /// Why the payload (the panel's libraries, QEMU, the installer) could
    /// not be mounted.
    public var payloadError: String?
    /// The first-run setup code while no admin exists.
    public var setupCode: String?
    /// Controllers that have no driver (storage, network, USB).
    public var noDriver: [String] = []
    /// Where the state lives ("on the data partition /dev/vdb1 (CB-DATA)",
    /// "in RAM …"); nil: not shown.
    public var state: String?
    /// An installed system's slots: the running one and each one's version.
    public var system: String?

    public init(version: String, hostname: String, addresses: [(interface: String, address: String)] = [],
                panelPort: Int = 8443, tlsFingerprint: String? = nil, configSource: String? = nil,
                configError: String? = nil, vms: [(name: String, state: String)] = [], display: String? = nil,
                payloadError: String? = nil, setupCode: String? = nil, noDriver: [String] = []) {
        self.version = version; self.hostname = hostname; self.addresses = addresses; self.panelPort = panelPort
        self.tlsFingerprint = tlsFingerprint; self.configSource = configSource; self.configError = configError
        self.vms = vms; self.display = display; self.payloadError = payloadError
        self.setupCode = setupCode; self.noDriver = noDriver
    }

    public static func == (a: StatusInfo, b: StatusInfo) -> Bool {
        a.version == b.version && a.hostname == b.hostname && a.panelPort == b.panelPort
            && a.addresses.map { $0.interface + " " + $0.address } == b.addresses.map { $0.interface + " " + $0.address }
            && a.tlsFingerprint == b.tlsFingerprint && a.configSource == b.configSource && a.configError == b.configError
            && a.vms.map { $0.name + " " + $0.state } == b.vms.map { $0.name + " " + $0.state } && a.display == b.display
            && a.payloadError == b.payloadError && a.setupCode == b.setupCode && a.noDriver == b.noDriver
            && a.state == b.state && a.system == b.system
    }

    /// The panel URLs, one per address (a placeholder while there is none).
    public var panelURLs: [String] {
        addresses.isEmpty ? ["https://<no address yet>:\(panelPort)/"] : addresses.map { "https://\($0.address):\(panelPort)/" }
    }
}

public enum StatusScreen {
    /// The banner text (no terminal escapes).
    public static func render(_ s: StatusInfo) -> String {
        var l: [String] = []
        l.append("CloudBIOS \(s.version) on \(s.hostname)")
        l.append(String(repeating: "=", count: 60))
        l.append("")
        if let e = s.payloadError {
            // the panel cannot start without the payload's libraries
            l.append("PAYLOAD ERROR: \(e)")
            l.append("    The web panel, virtual machines and installs are unavailable:")
            l.append("    write the whole ISO to the boot medium again.")
        } else {
            l.append("Manage this host with a web browser:")
            for u in s.panelURLs { l.append("    \(u)") }
            if let code = s.setupCode {
                l.append("")
                l.append("FIRST RUN: no admin yet. Open the panel and enter this setup code:")
                l.append("    \(code)")
            }
        }
        l.append("")
        l.append("TLS certificate SHA-256 fingerprint:")
        l.append("    \(s.tlsFingerprint ?? "(waiting for the panel)")")
        l.append("")
        if s.addresses.isEmpty {
            l.append("Network: no address yet (DHCP on every wired port)")
        } else {
            l.append("Network:")
            for a in s.addresses { l.append("    \(a.interface.padding(8)) \(a.address)") }
        }
        l.append("")
        l.append("Config: \(s.configSource ?? "none found (defaults)")")
        if let st = s.state { l.append("State: \(st)") }
        if let sys = s.system { l.append("System: \(sys)") }
        if !s.noDriver.isEmpty {
            l.append("Devices without a driver (disks or NICs behind them are not seen):")
            for d in s.noDriver.prefix(4) { l.append("    \(d)") }
        }
        if let e = s.configError {
            l.append("CONFIG ERROR:")
            for line in e.split(separator: "\n").prefix(8) { l.append("    \(line)") }
        }
        if !s.vms.isEmpty {
            l.append("")
            l.append("VMs:")
            for v in s.vms { l.append("    \(v.name.padding(20)) \(v.state)\(v.name == s.display ? "  (local display)" : "")") }
        }
        return l.joined(separator: "\n") + "\n"
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
