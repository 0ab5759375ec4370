/// The model shared by the config file (`cloudbios.yaml`) and the REST API.
/// One type per concept: the API's `POST /api/v1/vms` body is a `VMSpec`, the
/// same as an entry of `vms:` in the file.

/// The whole `cloudbios.yaml`.
public struct CloudBIOSConfig: Sendable, Equatable {
    public var version: Int = 1
    public var hostname: String?
    public var panel = PanelConfig()
    public var network = NetworkConfig()
    public var images: [ImageSource] = []
    public var vms: [VMSpec] = []
    /// Container images run as microVMs (`apps:`).
    public var apps: [AppEntry] = []
    public var install: InstallConfig?
    public var console = ConsoleConfig()
    /// The fleet this node belongs to (nil: a machine on its own).
    public var cluster: ClusterConfig?
    public var backups = BackupsConfig()
    /// Directory of the config file: relative `file:` paths resolve against it.
    public var baseDirectory: String = "."

    public init() {}

    /// The VM the local thin client shows: the first with `display: true`.
    public var displayVM: VMSpec? { vms.first { $0.display } }
}

public struct PanelConfig: Sendable, Equatable {
    public var listen: String = "0.0.0.0:8443"
    public var tls: TLSMode = .selfSigned
    public var users: [PanelUser] = []
    public init() {}

    /// `listen` split into host and port (validated by the decoder).
    public var host: String { HostPort.parse(listen)?.host ?? "0.0.0.0" }
    public var port: Int { HostPort.parse(listen)?.port ?? 8443 }
}

public enum TLSMode: Sendable, Equatable {
    case off
    case selfSigned
    case files(cert: String, key: String)
}

public struct PanelUser: Sendable, Equatable {
    public var name: String
    /// crypt(3) hash: `$6$…` (sha512-crypt) or `$y$…` (yescrypt).
    public var passwordHash: String
    /// Public keys guests' cloud-init gets by default (set at first run).
    public var sshAuthorizedKeys: [String] = []
    public init(name: String, passwordHash: String, sshAuthorizedKeys: [String] = []) {
        self.name = name; self.passwordHash = passwordHash; self.sshAuthorizedKeys = sshAuthorizedKeys
    }
}

public struct NetworkConfig: Sendable, Equatable {
    public enum Interfaces: Sendable, Equatable {
        /// DHCP on every wired NIC.
        case dhcp
        /// Explicit per-interface settings; NICs not listed are left down.
        case list([InterfaceConfig])
    }
    public var interfaces: Interfaces = .dhcp
    /// The physical NIC that `network: bridge` VMs are bridged onto (`vmbr0`);
    /// nil = the first wired NIC with a carrier.
    public var bridgePort: String?
    public init() {}
}

/// One entry of `network.interfaces`: physical NICs picked by `match`, or a
/// bond or VLAN made under `name`; then how it gets its addresses.
///
/// ```yaml
/// - match: "52:54:00:*"            # name or MAC glob; NICs matched by no entry stay down
///   addresses: [192.0.2.10/24, "2001:db8::10/64"]
///   gateway: 192.0.2.1
///   gateway6: "2001:db8::1"
///   dns: [192.0.2.53]
/// - name: bond0
///   bond: {members: ["enp1s*"], mode: active-backup}
///   dhcp: true
/// - name: vlan100
///   vlan: {link: bond0, id: 100}
///   address: 10.0.100.5/24
/// ```
public struct InterfaceConfig: Sendable, Equatable {
    /// Interface name glob (`en*`) or MAC address glob (`52:54:00:*`).
    public var match: String?
    /// The bond's or VLAN's interface name.
    public var name: String?
    public var bond: BondConfig?
    public var vlan: VLANConfig?
    /// DHCP for IPv4 (IPv6 router advertisements are always accepted).
    public var dhcp: Bool = true
    /// CIDRs, IPv4 or IPv6 (static when any IPv4 one is given).
    public var addresses: [String] = []
    public var gateway: String?
    public var gateway6: String?
    public var dns: [String] = []
    public var mtu: Int?
    public init(match: String) { self.match = match }
    public init(name: String) { self.name = name }

    /// What the entry is called in messages and in the network's state.
    public var label: String { name ?? match ?? "?" }
}

public struct BondConfig: Sendable, Equatable {
    public static let modes = ["active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"]
    /// Name or MAC globs of the NICs it bonds.
    public var members: [String]
    public var mode: String = "active-backup"
    public init(members: [String], mode: String = "active-backup") { self.members = members; self.mode = mode }
}

public struct VLANConfig: Sendable, Equatable {
    /// The interface it is tagged on: a NIC's name or another entry's `name`.
    public var link: String
    public var id: Int
    public init(link: String, id: Int) { self.link = link; self.id = id }
}

/// An image imported into the store at boot.
public struct ImageSource: Sendable, Equatable {
    public var name: String
    /// Path, relative to the config file's directory unless absolute.
    public var file: String?
    public var url: String?
    /// Lowercase hex SHA-256; a mismatch is an error.
    public var sha256: String?
    public init(name: String) { self.name = name }
}

/// The host console exported over VNC (like an IPMI KVM). Off by default.
public struct ConsoleConfig: Sendable, Equatable {
    /// `host:port` to listen on, nil = off.
    public var vnc: String?
    public init() {}
}

public enum Firmware: String, Sendable, Equatable, CaseIterable { case bios, uefi }
public enum NetworkMode: String, Sendable, Equatable, CaseIterable { case nat, bridge, none }
public enum Accel: String, Sendable, Equatable, CaseIterable { case auto, kvm, tcg }

/// One VM ("VPS"): an entry of `vms:` and the body of `POST /api/v1/vms`.
public struct VMSpec: Sendable, Equatable {
    public var name: String
    /// MiB.
    public var memory: Int = 512
    public var cpus: Int = 1
    /// Image-store names for direct kernel boot.
    public var kernel: String?
    public var initrd: String?
    public var append: String?
    /// Image-store name of an ISO.
    public var cdrom: String?
    public var disks: [DiskSpec] = []
    public var firmware: Firmware = .bios
    public var network: NetworkMode = .nat
    public var accel: Accel = .auto
    public var autostart: Bool = false
    public var order: Int = 0
    public var display: Bool = false
    public var cloudInit: CloudInitSpec?
    public var forwards: [PortForward] = []
    /// Boot order; nil: the CD first when one is set, else the disks.
    public var boot: [BootDevice]?
    /// The qemu-guest-agent channel.
    public var agent: Bool = true
    /// Backed up by the daily schedule (`backups.schedule`).
    public var backup: Bool = false
    /// A template never starts; it is cloned (`POST /api/v1/vms/{name}/clone`).
    public var template: Bool = false

    public init(name: String) { self.name = name }
}

extension VMSpec {
    /// Gives each disk without an id the first free `diskN` (N from its
    /// position when free, so the first form's files keep their names).
    public mutating func assignDiskIDs() {
        var used = Set(disks.compactMap(\.id))
        for i in disks.indices where disks[i].id == nil {
            var n = i
            while used.contains("disk\(n)") { n += 1 }
            disks[i].id = "disk\(n)"
            used.insert("disk\(n)")
        }
    }
}

/// A VM disk: a new qcow2 of `size` bytes, or a copy-on-write overlay of a
/// store image (of any format qemu-img reads), grown to `size` when given.
/// Its file is named by its id, never by its position, so removing one disk
/// leaves the others on their own files.
public struct DiskSpec: Sendable, Equatable {
    /// Stable id (`[a-z0-9][a-z0-9-]{0,31}`); nil until given: disks of the
    /// first form (no ids) get `disk0`, `disk1`, … once, when stored.
    public var id: String?
    public var image: String?
    public var size: Int64?

    public init(id: String? = nil, image: String? = nil, size: Int64? = nil) {
        self.id = id; self.image = image; self.size = size
    }

    public static func blank(size: Int64, id: String? = nil) -> DiskSpec { DiskSpec(id: id, size: size) }
    public static func image(_ name: String, size: Int64? = nil, id: String? = nil) -> DiskSpec { DiskSpec(id: id, image: name, size: size) }
}

/// `cloud_init:` — a NoCloud seed (volume label `cidata`) CloudBIOS builds
/// for the VM and attaches as a drive of its own.
public struct CloudInitSpec: Sendable, Equatable {
    /// Default: the VM's name.
    public var hostname: String?
    /// The user that gets the keys and passwordless sudo (default `debian`).
    public var user: String?
    public var passwordHash: String?
    public var sshAuthorizedKeys: [String] = []
    public var network: CloudInitNetwork = .dhcp
    /// Extra user-data, merged after the keys above.
    public var userData: String?
    public init() {}
}

public enum CloudInitNetwork: Sendable, Equatable {
    case dhcp
    /// `address` is an IPv4 CIDR.
    case staticIPv4(address: String, gateway: String?, dns: [String])
}

public enum BootDevice: String, Sendable, Equatable, CaseIterable { case cdrom, disk }

/// `forwards:` — a host port to a guest port of a `network: nat` VM.
public struct PortForward: Sendable, Equatable {
    public enum Proto: String, Sendable, Equatable, CaseIterable { case tcp, udp }
    public var host: Int
    public var guest: Int
    public var proto: Proto = .tcp
    public init(host: Int, guest: Int, proto: Proto = .tcp) { self.host = host; self.guest = guest; self.proto = proto }
}

// MARK: - install

public struct InstallConfig: Sendable, Equatable {
    public var disk = DiskSelector()
    public var wipe = false
    public var after: AfterInstall = .reboot
    public var webhook: String?
    public init() {}
}

public enum AfterInstall: String, Sendable, Equatable, CaseIterable { case reboot, poweroff, none }

/// Which disk to install to. Every given criterion must hold; globs use
/// `*`, `?` and `[…]` as in the shell.
public struct DiskSelector: Sendable, Equatable {
    public var path: String?
    public var byID: String?
    public var serial: String?
    public var model: String?
    public var size: SizeConstraint?
    public var ssd: Bool?
    public init() {}
    public var isEmpty: Bool { path == nil && byID == nil && serial == nil && model == nil && size == nil && ssd == nil }
}

public struct SizeConstraint: Sendable, Equatable, CustomStringConvertible {
    public enum Op: String, Sendable, CaseIterable { case ge = ">=", le = "<=", gt = ">", lt = "<", eq = "==" }
    public var op: Op
    public var bytes: Int64
    public init(op: Op, bytes: Int64) { self.op = op; self.bytes = bytes }
    public func matches(_ size: Int64) -> Bool {
        switch op {
        case .ge: size >= bytes
        case .le: size <= bytes
        case .gt: size > bytes
        case .lt: size < bytes
        case .eq: size == bytes
        }
    }
    public var description: String { "\(op.rawValue) \(Sizes.format(bytes))" }
}

public struct HostPort: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// `0.0.0.0:8443`, `[::]:8443`, `127.0.0.1:0`.
    public static func parse(_ s: String) -> HostPort? {
        var host: Substring
        var portPart: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portPart = s[s.index(after: colon)...]
        }
        guard let port = Int(portPart), (0...65535).contains(port), !host.isEmpty else { return nil }
        guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".:-".contains($0)) }) else { return nil }
        return HostPort(host: String(host), port: port)
    }

    /// `::1` or an address in 127.0.0.0/8 (names are not resolved here).
    public var isLoopback: Bool {
        if host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
