#if canImport(Glibc)
import Glibc
#endif
import Platform
import QEMU

/// `network: nat`: a host-internal bridge `cbnat0` (10.213.0.1/24) with DHCP
/// (dnsmasq, else busybox udhcpd) and masquerading (nftables, else iptables),
/// one tap per VM on it. Where the host cannot do that (no root, no tun, no
/// bridge support), NAT falls back to QEMU user networking and says why.
enum NATNetwork {
    static let bridge = "cbnat0"
    static let address = "10.213.0.1/24"
    static let subnet = "10.213.0.0/24"

    static func backend(mode: NATMode) async -> HostFacts.NATBackend {
        switch mode {
        case .user:
            return .user(reason: "--nat user")
        case .auto:
            if Files.exists("/sys/class/net/\(bridge)/bridge") { return .bridge(bridge) }
            return .user(reason: "no \(bridge) bridge on this host; start the daemon with --nat bridge to create it")
        case .bridge:
            do {
                try await setUp()
                return .bridge(bridge)
            } catch {
                Log.warning("NAT bridge unavailable, using QEMU user networking: \(error)")
                return .user(reason: "\(error)")
            }
        }
    }

    static func setUp() async throws {
        guard geteuid() == 0 else { throw ManagerError.tool("creating \(bridge) needs root") }
        guard Files.exists("/dev/net/tun") else { throw ManagerError.tool("/dev/net/tun is missing (tun module)") }
        if !Files.exists("/sys/class/net/\(bridge)") {
            try await runTool(["ip", "link", "add", bridge, "type", "bridge"])
            try await runTool(["ip", "addr", "add", address, "dev", bridge])
        }
        try await runTool(["ip", "link", "set", bridge, "up"])
        try? Files.writeAtomically("/proc/sys/net/ipv4/ip_forward", "1\n")
        // DHCP for guests
        let pidFile = "/run/cloudbios-nat-dhcp.pid"
        if let t = Files.readTrimmed(pidFile), let pid = Int32(t), processAlive(pid) {
            // already serving
        } else if Launcher.which("dnsmasq") != nil {
            try await runTool(["dnsmasq", "--conf-file=/dev/null", "--interface=\(bridge)", "--bind-interfaces",
                               "--except-interface=lo", "--dhcp-range=10.213.0.100,10.213.0.250,12h",
                               "--dhcp-option=option:router,10.213.0.1", "--pid-file=\(pidFile)"])
        } else if Launcher.which("busybox") != nil {
            let conf = "/run/cloudbios-udhcpd.conf"
            try Files.writeAtomically(conf, """
                interface \(bridge)
                start 10.213.0.100
                end 10.213.0.250
                option router 10.213.0.1
                option dns 10.213.0.1
                option subnet 255.255.255.0
                pidfile \(pidFile)
                lease_file /run/cloudbios-udhcpd.leases

                """)
            try await runTool(["busybox", "udhcpd", conf])
        } else {
            throw ManagerError.tool("no DHCP server (dnsmasq or busybox udhcpd)")
        }
        // masquerading
        if Launcher.which("nft") != nil {
            _ = try? await runTool(["nft", "delete", "table", "ip", "cloudbios"])
            try await runTool(["nft", "add table ip cloudbios; add chain ip cloudbios post { type nat hook postrouting priority 100 ; } ; add rule ip cloudbios post ip saddr \(subnet) oifname != \"\(bridge)\" masquerade"])
        } else if Launcher.which("iptables") != nil {
            _ = try? await runTool(["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
            try await runTool(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
        } else {
            Log.warning("neither nft nor iptables: guests on \(bridge) reach the host but not beyond")
        }
    }

    static func createTap(_ tap: String, bridge: String) async throws {
        if Files.exists("/sys/class/net/\(tap)") { _ = try? await runTool(["ip", "link", "del", tap]) }
        try await runTool(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        try await runTool(["ip", "link", "set", tap, "master", bridge])
        try await runTool(["ip", "link", "set", tap, "up"])
    }

    static func removeTap(_ tap: String) {
        guard Files.exists("/sys/class/net/\(tap)") else { return }
        Task { _ = try? await runTool(["ip", "link", "del", tap]) }
    }
}
