import Testing
@testable import VMManager

/// The pure parts of `network: bridge` (vmbr0) and `network: nat` setup.
@Suite struct HostBridgeTests {
    typealias Link = HostBridge.Link

    let links = [
        Link(name: "lo", ethernet: false, carrier: true),
        Link(name: "cbnat0", carrier: true, isBridge: true),
        Link(name: "docker0", carrier: false, isBridge: true),
        Link(name: "eno1", carrier: false),
        Link(name: "enp3s0", carrier: true),
        Link(name: "wlp2s0", carrier: true, isWireless: true),
        Link(name: "cbt0000abcd", carrier: true, isTunTap: true),
        Link(name: "enslaved", carrier: true, hasMaster: true),
    ]

    @Test func portIsTheWiredNICWithCarrierHoldingTheDefaultRoute() throws {
        #expect(try HostBridge.choosePort(configured: nil, links: links, defaultRouteDevices: ["enp3s0"]) == "enp3s0")
        // a default route over wifi or a NIC without carrier does not count
        #expect(throws: HostBridge.Failure.self) { try HostBridge.choosePort(configured: nil, links: links, defaultRouteDevices: ["wlp2s0", "eno1"]) }
        do {
            _ = try HostBridge.choosePort(configured: nil, links: links, defaultRouteDevices: [])
            Issue.record("no default route: must fail")
        } catch {
            #expect(error.description.contains("candidates: enp3s0") && error.description.contains("network.bridge_port"))
        }
        // the second default route when the first is not usable
        #expect(try HostBridge.choosePort(configured: nil, links: links, defaultRouteDevices: ["wlp2s0", "enp3s0"]) == "enp3s0")
    }

    @Test func configuredPortIsCheckedNotGuessed() throws {
        #expect(try HostBridge.choosePort(configured: "eno1", links: links, defaultRouteDevices: ["enp3s0"]) == "eno1")
        #expect(throws: HostBridge.Failure.badPort("network.bridge_port: no interface named 'eth9'")) {
            try HostBridge.choosePort(configured: "eth9", links: links, defaultRouteDevices: [])
        }
        for bad in ["wlp2s0", "cbnat0", "lo", "enslaved", "cbt0000abcd"] {
            #expect(throws: HostBridge.Failure.self) { try HostBridge.choosePort(configured: bad, links: links, defaultRouteDevices: []) }
        }
    }

    @Test func parsesIpOutputOfIproute2AndBusybox() {
        #expect(HostBridge.defaultRouteDevices("""
            default via 192.0.2.1 dev eth0 proto dhcp src 192.0.2.10 metric 100
            default via 198.51.100.1 dev eth1 metric 200
            """) == ["eth0", "eth1"])
        #expect(HostBridge.addresses("""
            2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
            2: eth0    inet 192.0.2.11/32 scope global eth0\\       valid_lft forever preferred_lft forever
            """) == [.init(cidr: "192.0.2.10/24", broadcast: "192.0.2.255"), .init(cidr: "192.0.2.11/32", broadcast: nil)])
        // iproute2 leaves out "dev X" when filtering by it; busybox keeps it
        #expect(HostBridge.routes("""
            default via 192.0.2.1 proto dhcp src 192.0.2.10 metric 100 linkdown
            192.0.2.0/24 proto kernel scope link src 192.0.2.10
            10.9.0.0/16 via 192.0.2.254 dev eth0 onlink
            """).map(\.arguments) == [["default", "via", "192.0.2.1", "proto", "dhcp", "src", "192.0.2.10", "metric", "100"],
                                      ["10.9.0.0/16", "via", "192.0.2.254", "onlink"]])
    }

    @Test func natRulesetReplacesItselfAtomically() {
        let r = NATNetwork.nftRuleset()
        let lines = r.split(separator: "\n").map { $0.trimmingCharacters() }
        // an empty table, its deletion, then the definition: one transaction that never stacks
        #expect(Array(lines.prefix(3)) == ["table ip cloudbios", "delete table ip cloudbios", "table ip cloudbios {"])
        #expect(lines.contains("type nat hook postrouting priority 100; policy accept;"))
        #expect(lines.contains("ip saddr 10.213.0.0/24 ip daddr != 10.213.0.0/24 oifname != \"cbnat0\" masquerade"))
    }
}
