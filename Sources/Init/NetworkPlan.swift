import Config
import Install

/// What PID 1 does to give the machine the network `network.interfaces`
/// asks for, worked out from the config and the NICs present, without
/// touching anything: the PE and an installed system (the same PID 1) run
/// the steps; tests read them.
///
/// `interfaces: dhcp` (the default) is DHCP on every wired NIC, which the
/// network phase starts before the config is known (a `cloudbios.config=`
/// URL needs it). A list replaces that once the config is read: NICs that
/// no entry matches are taken down, static entries lose their DHCP lease
/// and get their addresses, routes and DNS servers; bonds and VLANs are made
/// first, through the kernel's own interfaces (bonding's sysfs files, and
/// `ip link add … type vlan`).
public struct NetworkPlan: Equatable, Sendable {
    public struct NIC: Equatable, Sendable {
        public var name: String
        /// Lowercase `aa:bb:cc:dd:ee:ff`.
        public var mac: String
        public init(name: String, mac: String) { self.name = name; self.mac = mac.lowercased() }
    }

    public enum Step: Equatable, Sendable {
        case modprobe(String, [String])
        /// `/sbin/ip ARGS…`
        case ip([String])
        /// A sysfs attribute, e.g. bonding's mode and slaves.
        case write(String, String)
        /// A DHCP client on the interface (kept running).
        case dhcp(String)
        /// The interface's DHCP client stopped, if one runs.
        case stopDHCP(String)
        /// /etc/resolv.conf with these name servers.
        case resolvConf([String])
    }

    public var steps: [Step] = []
    /// What the log (and the status screen) says about the plan.
    public var notes: [String] = []
    /// One line per interface the plan configures: `bond0: dhcp`,
    /// `eth0: 192.0.2.10/24 via 192.0.2.1`.
    public var summary: [String] = []

    public init() {}

    public static func make(_ interfaces: NetworkConfig.Interfaces, nics: [NIC]) -> NetworkPlan {
        var plan = NetworkPlan()
        guard case .list(let entries) = interfaces else {
            plan.summary = nics.map { "\($0.name): dhcp" }
            return plan
        }
        let sorted = nics.sorted { $0.name < $1.name }
        func matches(_ glob: String, _ nic: NIC) -> Bool {
            Glob.matches(glob, nic.name) || Glob.matches(glob.lowercased(), nic.mac)
        }

        // bonds claim their members first; a NIC belongs to one bond
        var memberOf: [String: String] = [:]
        for e in entries {
            guard let name = e.name, let bond = e.bond else { continue }
            for nic in sorted where memberOf[nic.name] == nil && bond.members.contains(where: { matches($0, nic) }) {
                memberOf[nic.name] = name
            }
            if !sorted.contains(where: { memberOf[$0.name] == name }) {
                plan.notes.append("\(name): no NIC matches its members (\(bond.members.joined(separator: ", ")))")
            }
        }
        // each other NIC takes the first entry that matches it
        var configured: [(iface: String, entry: InterfaceConfig)] = []
        for nic in sorted where memberOf[nic.name] == nil {
            if let e = entries.first(where: { $0.match.map { matches($0, nic) } ?? false }) {
                configured.append((nic.name, e))
            } else {
                plan.steps += [.stopDHCP(nic.name), .ip(["-f", "inet", "addr", "flush", "dev", nic.name]), .ip(["link", "set", nic.name, "down"])]
                plan.notes.append("\(nic.name): matched by no entry of network.interfaces; left down")
            }
        }

        // bonds: members down and out of DHCP, then enslaved
        let bonds = entries.filter { $0.bond != nil && $0.name != nil }
        if !bonds.isEmpty { plan.steps.append(.modprobe("bonding", ["max_bonds=0"])) }
        for e in bonds {
            let name = e.name!, bond = e.bond!
            let members = sorted.filter { memberOf[$0.name] == name }.map(\.name)
            guard !members.isEmpty else { continue }
            plan.steps.append(.write("/sys/class/net/bonding_masters", "+\(name)"))
            plan.steps.append(.write("/sys/class/net/\(name)/bonding/mode", bond.mode))
            plan.steps.append(.write("/sys/class/net/\(name)/bonding/miimon", "100"))
            for m in members {
                plan.steps += [.stopDHCP(m), .ip(["-f", "inet", "addr", "flush", "dev", m]), .ip(["link", "set", m, "down"]),
                               .write("/sys/class/net/\(name)/bonding/slaves", "+\(m)")]
            }
            configured.append((name, e))
        }

        // VLANs on a NIC, a bond or a configured interface
        let vlans = entries.filter { $0.vlan != nil && $0.name != nil }
        if !vlans.isEmpty { plan.steps.append(.modprobe("8021q", [])) }
        let present = Set(sorted.map(\.name)).union(bonds.compactMap { b in
            sorted.contains { memberOf[$0.name] == b.name } ? b.name : nil
        })
        for e in vlans {
            let name = e.name!, vlan = e.vlan!
            guard present.contains(vlan.link) else {
                plan.notes.append("\(name): its link \(vlan.link) is not here; not made")
                continue
            }
            if memberOf[vlan.link] != nil {
                plan.notes.append("\(name): its link \(vlan.link) is a bond member; not made")
                continue
            }
            if !configured.contains(where: { $0.iface == vlan.link }) {
                plan.steps.append(.ip(["link", "set", vlan.link, "up"]))
            }
            plan.steps.append(.ip(["link", "add", "link", vlan.link, "name", name, "type", "vlan", "id", String(vlan.id)]))
            configured.append((name, e))
        }

        // addresses, routes, DHCP
        var dns: [String] = []
        for (iface, e) in configured {
            if let mtu = e.mtu { plan.steps.append(.ip(["link", "set", iface, "mtu", String(mtu)])) }
            plan.steps.append(.ip(["link", "set", iface, "up"]))
            var line: [String] = []
            if e.dhcp {
                plan.steps.append(.dhcp(iface))
                line.append("dhcp")
            } else {
                plan.steps += [.stopDHCP(iface), .ip(["-f", "inet", "addr", "flush", "dev", iface])]
            }
            for a in e.addresses {
                plan.steps.append(.ip(["addr", "add", a, "dev", iface]))
                line.append(a)
            }
            if let g = e.gateway {
                plan.steps.append(.ip(["route", "replace", "default", "via", g, "dev", iface]))
                line.append("via \(g)")
            }
            if let g = e.gateway6 {
                plan.steps.append(.ip(["-f", "inet6", "route", "replace", "default", "via", g, "dev", iface]))
                line.append("via \(g)")
            }
            if let mtu = e.mtu { line.append("mtu \(mtu)") }
            if let v = e.vlan { line.append("vlan \(v.id) on \(v.link)") }
            if let b = e.bond {
                line.append("bond \(b.mode) of \(sorted.filter { memberOf[$0.name] == iface }.map(\.name).joined(separator: "+"))")
            }
            plan.summary.append("\(iface): " + (line.isEmpty ? "up, no address" : line.joined(separator: " ")))
            for d in e.dns where !dns.contains(d) { dns.append(d) }
        }
        if !dns.isEmpty { plan.steps.append(.resolvConf(dns)) }
        return plan
    }
}
