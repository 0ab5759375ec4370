#if canImport(Glibc)
import Glibc
#endif

/// The host's network interfaces as the kernel has them now (sysfs and
/// getifaddrs): what the status screen and `GET /api/v1/host` show.
public enum NetInterfaces {
    public struct Interface: Equatable, Sendable {
        public var name: String
        public var mac: String
        public var state: String
        public var mtu: Int
        /// CIDRs: IPv4 first, then IPv6 without link-local ones.
        public var addresses: [String] = []
        /// `nic`, `bond`, `vlan`, `bridge`, `tap` or `virtual`.
        public var kind: String
        public var master: String?
    }

    /// Every interface but lo, by name.
    public static func list(sys: String = "/sys") -> [Interface] {
        let addrs = addresses()
        return Files.list(sys + "/class/net").sorted().compactMap { name -> Interface? in
            let p = "\(sys)/class/net/\(name)"
            guard name != "lo", Files.exists(p + "/type") || Files.exists(p + "/address") else { return nil }
            var kind = "virtual"
            if Files.exists(p + "/bonding") { kind = "bond" }
            else if Files.exists(p + "/bridge") { kind = "bridge" }
            else if Files.exists(p + "/tun_flags") { kind = "tap" }
            else if Files.exists("/proc/net/vlan/\(name)") || ((try? Files.readString(p + "/uevent")).map { $0.contains("DEVTYPE=vlan") } ?? false) { kind = "vlan" }
            else if Files.exists(p + "/device") { kind = "nic" }
            let master = Files.readLink(p + "/master").map { String($0.split(separator: "/").last ?? "") }
            let own = addrs.filter { $0.interface == name }
            return Interface(name: name, mac: Files.readTrimmed(p + "/address") ?? "",
                             state: Files.readTrimmed(p + "/operstate") ?? "unknown",
                             mtu: Files.readTrimmed(p + "/mtu").flatMap { Int($0) } ?? 0,
                             addresses: own.filter { !$0.v6 }.map(\.cidr) + own.filter(\.v6).map(\.cidr),
                             kind: kind, master: master)
        }
    }

    /// IPv4 and global IPv6 addresses with their prefix lengths.
    public static func addresses() -> [(interface: String, cidr: String, v6: Bool)] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [(interface: String, cidr: String, v6: Bool)] = []
        var cur: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = cur {
            defer { cur = ifa.pointee.ifa_next }
            let name = String(cString: ifa.pointee.ifa_name)
            guard name != "lo", let sa = ifa.pointee.ifa_addr else { continue }
            var buf = [CChar](repeating: 0, count: 64)
            let family = Int32(sa.pointee.sa_family)
            if family == AF_INET {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &buf, 64)
                }
            } else if family == AF_INET6 {
                var linkLocal = false
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var a = sin.pointee.sin6_addr
                    linkLocal = withUnsafeBytes(of: &a) { $0[0] == 0xfe && $0[1] & 0xc0 == 0x80 }
                    _ = inet_ntop(AF_INET6, &a, &buf, 64)
                }
                if linkLocal { continue }
            } else {
                continue
            }
            out.append((name, "\(String(nulTerminated: buf))/\(prefixLength(ifa.pointee.ifa_netmask))", family == AF_INET6))
        }
        return out
    }

    static func prefixLength(_ mask: UnsafeMutablePointer<sockaddr>?) -> Int {
        guard let mask else { return 0 }
        var bits = 0
        if Int32(mask.pointee.sa_family) == AF_INET {
            mask.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { bits = UInt32(bigEndian: $0.pointee.sin_addr.s_addr).nonzeroBitCount }
        } else {
            mask.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { m in
                var a = m.pointee.sin6_addr
                bits = withUnsafeBytes(of: &a) { $0.reduce(0) { $0 + $1.nonzeroBitCount } }
            }
        }
        return bits
    }

    /// The `via` addresses of default routes (IPv4 from /proc/net/route,
    /// IPv6 from /proc/net/ipv6_route).
    public static func defaultGateways(proc: String = "/proc") -> [String] {
        var out: [String] = []
        for line in ((try? Files.readString(proc + "/net/route")) ?? "").split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count > 2, f[1] == "00000000", let g = UInt32(f[2], radix: 16), g != 0 else { continue }
            let b = withUnsafeBytes(of: g.littleEndian) { Array($0) }
            out.append(b.map(String.init).joined(separator: "."))
        }
        for line in ((try? Files.readString(proc + "/net/ipv6_route")) ?? "").split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 10, f[0] == String(repeating: "0", count: 32), f[1] == "00",
                  f[4] != Substring(String(repeating: "0", count: 32)), f[4].count == 32 else { continue }
            let hex = Array(f[4].utf8)
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { b in
                for i in 0..<16 { b[i] = UInt8(String(decoding: hex[(2 * i)..<(2 * i + 2)], as: UTF8.self), radix: 16) ?? 0 }
            }
            var buf = [CChar](repeating: 0, count: 64)
            _ = inet_ntop(AF_INET6, &a, &buf, 64)
            out.append(String(nulTerminated: buf))
        }
        return out
    }

    /// The name servers of /etc/resolv.conf.
    public static func nameServers(resolvConf: String = "/etc/resolv.conf") -> [String] {
        ((try? Files.readString(resolvConf)) ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return f.count >= 2 && f[0] == "nameserver" ? String(f[1]) : nil
        }
    }
}
