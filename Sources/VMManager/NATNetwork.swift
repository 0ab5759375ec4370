#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU
import CTap

/// `network: nat`: a host-internal bridge `cbnat0` (10.213.0.1/24) with DHCP
/// (dnsmasq, else busybox udhcpd) and masquerading (nftables, else iptables),
/// one tap per VM on it. Where the host cannot do that (no root, no tun, no
/// bridge support), NAT falls back to QEMU user networking and says why.
enum NATNetwork {
    static let bridge = "cbnat0"
    static let address = "10.213.0.1/24"
    static let subnet = "10.213.0.0/24"
    static let mac = "02:cb:0a:d5:00:01"

    static func backend(mode: NATMode, stateDir: String) async -> HostFacts.NATBackend {
        switch mode {
        case .user:
            return .user(reason: "--nat user")
        case .auto:
            if Files.exists("/sys/class/net/\(bridge)/bridge") { return .bridge(bridge) }
            return .user(reason: "no \(bridge) bridge on this host; start the daemon with --nat bridge to create it")
        case .bridge:
            do {
                try await setUp(dir: "\(stateDir)/nat")
                return .bridge(bridge)
            } catch {
                Log.warning("NAT bridge unavailable, using QEMU user networking: \(error)")
                return .user(reason: "\(error)")
            }
        }
    }

    /// Creates the bridge, DHCP server and masquerading (idempotent). The DHCP
    /// server's pid, config and leases live in `dir`.
    static func setUp(dir: String) async throws {
        guard geteuid() == 0 else { throw ManagerError.tool("creating \(bridge) needs root") }
        if !Files.exists("/dev/net/tun") {
            // a module kernel makes the node only once tun is loaded
            _ = try? await runTool(["modprobe", "tun"])
            for _ in 0..<20 where !Files.exists("/dev/net/tun") { try? await Task.sleep(nanoseconds: 50_000_000) }
        }
        guard Files.exists("/dev/net/tun") else { throw ManagerError.tool("/dev/net/tun is missing (tun module)") }
        if !Files.exists("/sys/class/net/\(bridge)") {
            try await runTool(["ip", "link", "add", bridge, "type", "bridge"])
            try await runTool(["ip", "addr", "add", address, "dev", bridge])
        }
        // A bridge without an address of its own takes the lowest MAC of its
        // ports, so it would change whenever a VM's tap comes or goes, and
        // guests would keep ARP entries for a gateway MAC that is gone. A
        // fixed, locally administered MAC keeps the gateway where it is.
        try await runTool(["ip", "link", "set", bridge, "address", mac])
        try await runTool(["ip", "link", "set", bridge, "up"])
        // DHCP for guests
        try Files.makeDirectories(dir)
        let pidFile = "\(dir)/dhcp.pid"
        if let t = Files.readTrimmed(pidFile), let pid = Int32(t), processAlive(pid),
           (try? Files.readString("/proc/\(pid)/cmdline"))?.contains("--dhcp-hostsfile") != false || Launcher.which("dnsmasq") == nil {
            // already serving
        } else if Launcher.which("dnsmasq") != nil {
            // one of an older daemon, without the hosts file: replaced
            if let t = Files.readTrimmed(pidFile), let pid = Int32(t), processAlive(pid) {
                kill(pid, SIGTERM)
                for _ in 0..<50 where processAlive(pid) { try? await Task.sleep(nanoseconds: 20_000_000) }
            }
            // fixed addresses (guests with forwards) come from the hosts
            // file, re-read on SIGHUP; DNS is forwarded to the host's resolvers
            if !Files.exists(hostsFile(dir)) { try Files.writeAtomically(hostsFile(dir), "") }
            try await runTool(["dnsmasq", "--conf-file=/dev/null", "--interface=\(bridge)", "--bind-interfaces",
                               "--except-interface=lo", "--dhcp-range=10.213.0.100,10.213.0.250,12h",
                               "--dhcp-option=option:router,10.213.0.1", "--dhcp-option=option:dns-server,10.213.0.1",
                               "--pid-file=\(pidFile)", "--dhcp-hostsfile=\(hostsFile(dir))",
                               "--dhcp-leasefile=\(dir)/dnsmasq.leases"])
        } else if Launcher.which("busybox") != nil {
            let conf = "\(dir)/udhcpd.conf"
            try Files.writeAtomically(conf, """
                interface \(bridge)
                start 10.213.0.100
                end 10.213.0.250
                option router 10.213.0.1
                option dns 10.213.0.1
                option subnet 255.255.255.0
                pidfile \(pidFile)
                lease_file \(dir)/udhcpd.leases

                """)
            try await runTool(["busybox", "udhcpd", conf])
        } else {
            throw ManagerError.tool("no DHCP server (dnsmasq or busybox udhcpd)")
        }
        // masquerading
        try await masquerade(dir: dir)
    }

    /// A forward of a host port to a NAT guest's fixed address.
    struct Forward: Equatable, Sendable {
        var proto: String
        var hostPort: Int
        var address: String
        var guestPort: Int
    }

    /// The nftables ruleset of the `cloudbios` table: guests' traffic leaving
    /// through any interface but the bridge is masqueraded; each forward
    /// sends a port of every host address (from outside and from the host
    /// itself) to its guest.
    static func nftRuleset(forwards: [Forward] = []) -> String {
        // The empty `table` + `delete table` pair makes the load replace a
        // table left by an earlier run in one atomic transaction (and works
        // when there is none), so restarts never stack rules.
        var out = """
        table ip cloudbios
        delete table ip cloudbios
        table ip cloudbios {
        \tchain postrouting {
        \t\ttype nat hook postrouting priority 100; policy accept;
        \t\tip saddr \(subnet) ip daddr != \(subnet) oifname != "\(bridge)" masquerade

        """
        guard !forwards.isEmpty else { return out + "\t}\n}\n" }
        // the host's own connections (127.0.0.1:PORT) reach the guest from the bridge's address
        out += "\t\toifname \"\(bridge)\" ip saddr 127.0.0.0/8 ct status dnat masquerade\n\t}\n"
        let dnat = forwards.map { "\t\tfib daddr type local \($0.proto) dport \($0.hostPort) dnat to \($0.address):\($0.guestPort)\n" }.joined()
        out += "\tchain prerouting {\n\t\ttype nat hook prerouting priority -100; policy accept;\n" + dnat + "\t}\n"
        out += "\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n" + dnat + "\t}\n"
        return out + "}\n"
    }

    static func hostsFile(_ dir: String) -> String { "\(dir)/dhcp-hosts" }

    /// The fixed address of each NAT guest with forwards (10.213.0.2–99,
    /// kept in `dir`/addresses across restarts), the DHCP server told of
    /// them, and the forwards put in place. Called whenever definitions change.
    static func applyForwards(dir: String, vms: [(name: String, mac: String, forwards: [PortForward])]) async throws {
        let file = "\(dir)/addresses"
        var known: [String: String] = [:]
        for line in ((try? Files.readString(file)) ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2 { known[String(f[0])] = String(f[1]) }
        }
        let wanted = vms.filter { !$0.forwards.isEmpty }
        var addresses = known.filter { k in wanted.contains { $0.name == k.key } }
        for vm in wanted where addresses[vm.name] == nil {
            let used = Set(addresses.values)
            guard let free = (2...99).map({ "10.213.0.\($0)" }).first(where: { !used.contains($0) }) else {
                throw ManagerError.tool("no free NAT address for VM \(vm.name)")
            }
            addresses[vm.name] = free
        }
        try Files.makeDirectories(dir)
        try Files.writeAtomically(file, addresses.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined())
        let hosts = wanted.compactMap { vm in addresses[vm.name].map { "\(vm.mac),\($0),\(vm.name)\n" } }.joined()
        if (try? Files.readString(hostsFile(dir))) != hosts {
            try Files.writeAtomically(hostsFile(dir), hosts)
            if let t = Files.readTrimmed("\(dir)/dhcp.pid"), let pid = Int32(t), processAlive(pid) { kill(pid, SIGHUP) }
        }
        var rules: [Forward] = []
        for vm in wanted {
            guard let a = addresses[vm.name] else { continue }
            for f in vm.forwards { rules.append(Forward(proto: f.proto.rawValue, hostPort: f.host, address: a, guestPort: f.guest)) }
        }
        if Launcher.which("nft") != nil {
            let path = "\(dir)/nftables.conf"
            try Files.writeAtomically(path, nftRuleset(forwards: rules))
            try await runTool(["nft", "-f", path])
        } else if !rules.isEmpty {
            throw ManagerError.tool("forwards need nftables (nft)")
        }
        if !rules.isEmpty { try? Files.writeInPlace("/proc/sys/net/ipv4/conf/\(bridge)/route_localnet", "1\n") }
    }

    /// Turns on IPv4 forwarding and installs the masquerade (nftables, else
    /// iptables). Idempotent.
    static func masquerade(dir: String) async throws {
        do {
            try Files.writeInPlace("/proc/sys/net/ipv4/ip_forward", "1\n")
        } catch {
            Log.warning("cannot enable IPv4 forwarding: \(error); guests on \(bridge) reach only the host")
        }
        if Launcher.which("nft") != nil {
            let rules = "\(dir)/nftables.conf"
            try Files.writeAtomically(rules, nftRuleset())
            try await runTool(["nft", "-f", rules])
            Log.info("nftables table ip cloudbios: masquerading \(subnet) out of every interface but \(bridge)")
        } else if Launcher.which("iptables") != nil {
            _ = try? await runTool(["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
            try await runTool(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
        } else {
            Log.warning("neither nft nor iptables: guests on \(bridge) reach the host but not beyond")
        }
    }

    /// Removes what `setUp` made — the DHCP server, the nftables table and
    /// the bridge — when the daemon exits with no guest left on it.
    static func tearDown(dir: String) async {
        if let t = Files.readTrimmed("\(dir)/dhcp.pid"), let pid = Int32(t), processAlive(pid) {
            kill(pid, SIGTERM)
            for _ in 0..<50 where processAlive(pid) { try? await Task.sleep(nanoseconds: 20_000_000) }
        }
        Files.remove("\(dir)/dhcp.pid")
        if Launcher.which("nft") != nil { _ = try? await runTool(["nft", "delete", "table", "ip", "cloudbios"]) }
        if Files.exists("/sys/class/net/\(bridge)") { _ = try? await runTool(["ip", "link", "del", bridge]) }
        Log.info("NAT: \(bridge), its DHCP server and the nftables table removed (no guest uses them)")
    }

    static func createTap(_ tap: String, bridge: String) async throws {
        if Files.exists("/sys/class/net/\(tap)") { _ = try? await runTool(["ip", "link", "del", tap]) }
        // through /dev/net/tun (busybox's ip, the PE's, has no tuntap); the
        // node appears when the tun driver loads
        var rc = cb_tap_create(tap)
        if rc == -ENOENT || rc == -ENODEV {
            _ = try? await runTool(["modprobe", "tun"])
            rc = cb_tap_create(tap)
        }
        if rc < 0 { throw SystemError("create tap \(tap) on /dev/net/tun", errno: -rc) }
        try await runTool(["ip", "link", "set", tap, "master", bridge])
        try await runTool(["ip", "link", "set", tap, "up"])
    }

    static func removeTap(_ tap: String) {
        guard Files.exists("/sys/class/net/\(tap)") else { return }
        Task { _ = try? await runTool(["ip", "link", "del", tap]) }
    }
}
