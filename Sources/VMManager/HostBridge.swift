#if canImport(Glibc)
import Glibc
#endif
import Platform

/// `network: bridge`, Proxmox's vmbr0 style: the physical NIC becomes a port
/// of the bridge `vmbr0`, and the host's IPv4 addresses and routes move from
/// the NIC onto the bridge, so the host stays reachable at its address while
/// each VM's tap joins the same LAN.
///
/// The port is `network.bridge_port` from the config, else the first wired
/// NIC with carrier that holds the default route. Everything goes through
/// `ip` (iproute2 or busybox); a failure half way puts the NIC back as it was.
enum HostBridge {
    static let name = "vmbr0"

    /// What sysfs says about one network interface.
    struct Link: Sendable, Equatable {
        var name: String
        /// ARPHRD_ETHER (`type` 1).
        var ethernet = true
        var carrier = false
        var isBridge = false
        /// Already enslaved (to a bridge or bond).
        var hasMaster = false
        var isTunTap = false
        var isWireless = false
    }

    /// An IPv4 address of the port, as `ip -4 -o addr` shows it.
    struct Address: Sendable, Equatable {
        var cidr: String
        var broadcast: String?
    }

    /// A route of the port, as `ip route add` arguments without `dev`.
    struct Route: Sendable, Equatable {
        var arguments: [String]
    }

    enum Failure: Error, CustomStringConvertible, Equatable {
        case noPort(String)
        case badPort(String)
        var description: String {
            switch self {
            case .noPort(let m), .badPort(let m): m
            }
        }
    }

    /// Picks the bridge port: the configured one (which must be a usable
    /// wired NIC), else the first wired NIC with carrier that has a default route.
    static func choosePort(configured: String?, links: [Link], defaultRouteDevices: [String]) throws(Failure) -> String {
        func usable(_ l: Link) -> String? {
            if !l.ethernet || l.name == "lo" { return "is not an Ethernet interface" }
            if l.isBridge { return "is a bridge" }
            if l.isTunTap { return "is a tap/tun device" }
            if l.isWireless { return "is a wireless interface (wireless NICs cannot be bridged)" }
            if l.hasMaster { return "is already a port of another bridge or bond" }
            if l.name == NATNetwork.bridge || l.name.hasPrefix("cbt") { return "belongs to CloudBIOS' own networking" }
            return nil
        }
        if let configured {
            guard let l = links.first(where: { $0.name == configured }) else {
                throw .badPort("network.bridge_port: no interface named '\(configured)'")
            }
            if let why = usable(l) { throw .badPort("network.bridge_port: '\(configured)' \(why)") }
            return configured
        }
        let candidates = links.filter { usable($0) == nil && $0.carrier }
        for dev in defaultRouteDevices {
            if let l = candidates.first(where: { $0.name == dev }) { return l.name }
        }
        let wired = candidates.map(\.name)
        throw .noPort(wired.isEmpty
            ? "network: bridge needs a wired NIC with carrier to put on \(name); none found (set network.bridge_port)"
            : "network: bridge: no wired NIC with carrier holds the default route (candidates: \(wired.joined(separator: ", "))); set network.bridge_port")
    }

    /// Devices of the default routes in `ip -4 route show default` output.
    static func defaultRouteDevices(_ output: String) -> [String] {
        var devs: [String] = []
        for line in output.split(separator: "\n") {
            let t = line.split(separator: " ").map(String.init)
            guard t.first == "default", let i = t.firstIndex(of: "dev"), i + 1 < t.count else { continue }
            if !devs.contains(t[i + 1]) { devs.append(t[i + 1]) }
        }
        return devs
    }

    /// IPv4 addresses in `ip -4 -o addr show dev X` output.
    static func addresses(_ output: String) -> [Address] {
        var out: [Address] = []
        for line in output.split(separator: "\n") {
            let t = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\\" }).map(String.init)
            guard let i = t.firstIndex(of: "inet"), i + 1 < t.count else { continue }
            var a = Address(cidr: t[i + 1])
            if !a.cidr.contains("/") { a.cidr += "/32" }
            if let b = t.firstIndex(where: { $0 == "brd" || $0 == "broadcast" }), b + 1 < t.count { a.broadcast = t[b + 1] }
            out.append(a)
        }
        return out
    }

    /// Routes in `ip -4 route show dev X` output that must be re-created on
    /// the bridge: everything but the kernel's own subnet routes (those come
    /// back with the addresses).
    static func routes(_ output: String) -> [Route] {
        var out: [Route] = []
        let keyed: Set<String> = ["via", "metric", "src", "proto", "scope", "mtu", "table"]
        for line in output.split(separator: "\n") {
            let t = line.split(separator: " ").map(String.init).filter { !$0.isEmpty }
            guard let dest = t.first else { continue }
            if let p = t.firstIndex(of: "proto"), p + 1 < t.count, t[p + 1] == "kernel" { continue }
            var args = [dest]
            var i = 1
            while i < t.count {
                if keyed.contains(t[i]), i + 1 < t.count {
                    args += [t[i], t[i + 1]]
                    i += 2
                } else if t[i] == "onlink" {
                    args.append("onlink")
                    i += 1
                } else if t[i] == "dev", i + 1 < t.count {
                    i += 2
                } else {
                    i += 1   // flags such as linkdown
                }
            }
            out.append(Route(arguments: args))
        }
        return out
    }

    static func readLinks(sys: String = "/sys/class/net") -> [Link] {
        Files.list(sys).sorted().map { n in
            let d = "\(sys)/\(n)"
            var l = Link(name: n)
            l.ethernet = Files.readTrimmed("\(d)/type") == "1"
            l.carrier = Files.readTrimmed("\(d)/carrier") == "1"
            l.isBridge = Files.exists("\(d)/bridge")
            l.hasMaster = Files.exists("\(d)/master")
            l.isTunTap = Files.exists("\(d)/tun_flags")
            l.isWireless = Files.exists("\(d)/wireless") || Files.exists("\(d)/phy80211")
            return l
        }
    }

    /// Makes sure `vmbr0` exists (idempotent) and returns its name.
    static func ensure(port configured: String?) async throws -> String {
        if Files.exists("/sys/class/net/\(name)/bridge") { return name }
        guard geteuid() == 0 else { throw ManagerError.tool("creating the bridge \(name) needs root") }
        let port = try choosePort(configured: configured, links: readLinks(),
                                  defaultRouteDevices: defaultRouteDevices(try await toolOutput(["ip", "-4", "route", "show", "default"])))
        let addrs = addresses(try await toolOutput(["ip", "-4", "-o", "addr", "show", "dev", port]))
        let rts = routes(try await toolOutput(["ip", "-4", "route", "show", "dev", port]))
        let mac = Files.readTrimmed("/sys/class/net/\(port)/address")
        Log.info("creating bridge \(name) on \(port): moving \(addrs.map(\.cidr).joined(separator: ", ")) and \(rts.count) route(s) onto it")

        var done: [String] = []
        do {
            try await runTool(["ip", "link", "add", name, "type", "bridge"])
            done.append("bridge")
            // the bridge keeps the NIC's MAC: DHCP leases and ARP caches stay valid
            if let mac, !mac.isEmpty { try await runTool(["ip", "link", "set", name, "address", mac]) }
            try await runTool(["ip", "link", "set", port, "master", name])
            done.append("port")
            try await runTool(["ip", "link", "set", name, "up"])
            try await runTool(["ip", "link", "set", port, "up"])
            for a in addrs {
                try await runTool(["ip", "addr", "del", a.cidr, "dev", port])
                done.append("addr")
                try await runTool(["ip", "addr", "add", a.cidr] + (a.broadcast.map { ["broadcast", $0] } ?? []) + ["dev", name])
            }
            for r in rts {
                try await runTool(["ip", "route", "replace"] + r.arguments + ["dev", name])
            }
        } catch {
            Log.error("creating \(name) on \(port) failed, restoring \(port): \(error)")
            if done.contains("port") { _ = try? await runTool(["ip", "link", "set", port, "nomaster"]) }
            if done.contains("bridge") { _ = try? await runTool(["ip", "link", "del", name]) }
            for a in addrs {
                _ = try? await runTool(["ip", "addr", "add", a.cidr] + (a.broadcast.map { ["broadcast", $0] } ?? []) + ["dev", port])
            }
            for r in rts { _ = try? await runTool(["ip", "route", "replace"] + r.arguments + ["dev", port]) }
            throw error
        }
        Log.info("bridge \(name) up on \(port) with \(addrs.map(\.cidr).joined(separator: ", "))")
        return name
    }
}

/// Runs a helper program and returns its output; throws on failure.
func toolOutput(_ argv: [String]) async throws -> String {
    guard let path = Launcher.which(argv[0]) else { throw ManagerError.tool("\(argv[0]) is not installed") }
    let launcher = Launcher(path, Array(argv.dropFirst()))
    let (status, output) = try await blocking { try launcher.run(mergeError: false) }
    if status != 0 {
        throw ManagerError.tool("\(argv.joined(separator: " ")) failed (\(status)): \(output.trimmedLines(3))")
    }
    return output
}
