import Testing
@testable import Config

/// `network.interfaces`: the static form, bonds, VLANs, IPv6, and what is
/// refused (with its line and column).
@Suite struct NetworkConfigTests {
    func interfaces(_ body: String) throws -> [InterfaceConfig] {
        let cfg = try ConfigLoader.load(path: "c.yaml", text: "version: 1\nnetwork:\n  interfaces:\n" + body)
        guard case .list(let l) = cfg.network.interfaces else { Issue.record("not a list"); return [] }
        return l
    }

    @Test func staticDualStackBondAndVLAN() throws {
        let l = try interfaces("""
            - match: "52:54:00:*"
              addresses: [192.0.2.10/24, "2001:db8::10/64"]
              gateway: 192.0.2.1
              gateway6: "fe80::1"
              dns: [192.0.2.53, "2001:db8::53"]
              mtu: 9000
            - name: bond0
              bond: {members: ["enp1s*", "enp2s*"], mode: 802.3ad}
            - name: vlan100
              vlan: {link: bond0, id: 100}
              address: 10.0.100.5/24
        """)
        #expect(l.count == 3)
        #expect(l[0].match == "52:54:00:*" && !l[0].dhcp && l[0].addresses == ["192.0.2.10/24", "2001:db8::10/64"])
        #expect(l[0].gateway == "192.0.2.1" && l[0].gateway6 == "fe80::1" && l[0].dns == ["192.0.2.53", "2001:db8::53"] && l[0].mtu == 9000)
        #expect(l[1].name == "bond0" && l[1].bond == BondConfig(members: ["enp1s*", "enp2s*"], mode: "802.3ad") && l[1].dhcp)
        #expect(l[2].vlan == VLANConfig(link: "bond0", id: 100) && l[2].addresses == ["10.0.100.5/24"] && !l[2].dhcp)
        // only IPv6 static: IPv4 still by DHCP
        #expect(try interfaces("    - {match: eth0, addresses: [\"2001:db8::5/64\"]}\n")[0].dhcp)
    }

    @Test func refusedWithLineAndColumn() {
        let cases: [(String, String)] = [
            ("    - {match: eth0, address: 192.0.2.10/24, gateway: 198.51.100.1}\n",
             "c.yaml:4:54: network.interfaces[0].gateway 198.51.100.1 is outside the interface's subnets (192.0.2.10/24)"),
            ("    - {match: eth0, dhcp: false}\n",
             "c.yaml:4:5: network.interfaces gives no interface an address (no dhcp: true, no address): the machine would be unreachable"),
            ("    - {match: eth0, address: 192.0.2.10}\n",
             "c.yaml:4:30: network.interfaces[0]: '192.0.2.10' is not an address with its prefix length, like 192.0.2.10/24 or 2001:db8::10/64"),
            ("    - {match: eth0, address: \"2001:db8:::1/64\"}\n",
             "c.yaml:4:30: network.interfaces[0]: '2001:db8:::1/64' is not an address with its prefix length, like 192.0.2.10/24 or 2001:db8::10/64"),
            ("    - {match: eth0, dhcp: true, address: 192.0.2.10/24}\n",
             "c.yaml:4:27: network.interfaces[0] has both dhcp: true and an IPv4 address"),
            ("    - {name: v1, vlan: {link: eth0, id: 4095}}\n    - {match: eth0}\n",
             "c.yaml:4:41: network.interfaces[0].vlan.id must be between 1 and 4094, not 4095"),
            ("    - {name: b0, bond: {members: [eth*], mode: active-backp}}\n    - {match: eth0}\n",
             "c.yaml:4:48: network.interfaces[0].bond.mode must be one of active-backup, balance-rr, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb, not 'active-backp' (did you mean 'active-backup'?)"),
            ("    - {match: eth0, name: b0}\n",
             "c.yaml:4:7: network.interfaces[0] has both match (NICs) and name (a bond or VLAN): give one"),
            ("    - {name: b0}\n    - {match: eth0}\n",
             "c.yaml:4:7: network.interfaces[0] with name must be a bond (bond: {members}) or a VLAN (vlan: {link, id})"),
            ("    - {match: eth0, gateway6: \"2001:db9::1\", addresses: [\"2001:db8::2/64\"]}\n",
             "c.yaml:4:31: network.interfaces[0].gateway6 2001:db9::1 is neither link-local nor inside the interface's IPv6 prefixes"),
        ]
        for (yaml, expected) in cases {
            let got = errors("version: 1\nnetwork:\n  interfaces:\n" + yaml)
            #expect(got.contains(expected), "\(yaml): \(got)")
        }
    }

    @Test func ipv6Literals() {
        for good in ["::", "::1", "2001:db8::10", "fe80::1", "2001:db8:0:0:0:0:0:1", "::ffff:192.0.2.1", "1::"] {
            #expect(IPv6.isAddress(good), "\(good)")
        }
        for bad in ["", ":", ":::", "2001:db8:::1", "1:2:3:4:5:6:7:8:9", "12345::", "g::1", "1::2::3", "::ffff:300.1.1.1"] {
            #expect(!IPv6.isAddress(bad), "\(bad)")
        }
        #expect(IPv6.groups("2001:db8::10") == [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10])
        #expect(IPv6.isInSubnet("2001:db8::1", of: "2001:db8::10/64"))
        #expect(!IPv6.isInSubnet("2001:db9::1", of: "2001:db8::10/64"))
        #expect(!IPv6.isInSubnet("2001:db8::10", of: "2001:db8::10/64"))
        #expect(IPv6.isCIDR("2001:db8::/32") && !IPv6.isCIDR("2001:db8::/129") && !IPv6.isCIDR("2001:db8::"))
    }
}
