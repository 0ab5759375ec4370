#if canImport(Glibc)
import Glibc
#endif
import Platform

public enum Modalias {
    /// Every distinct `modalias` of the devices on a bus, read the way
    /// udev's coldplug finds them (`sys`/bus/*/devices/*), plus the CPU's
    /// (`sys`/devices/system/cpu). A flat list of a few hundred links: a walk
    /// of the whole device tree reads thousands of entries, which under
    /// emulation costs a tenth of a second or more, every rescan.
    public static func scan(sys: String) -> Set<String> {
        aliases(of: busDevices(sys: sys) + [sys + "/devices/system/cpu"])
    }

    /// The PCI class and subclass of a PCI modalias, as four upper-case hex
    /// digits ("0106": a SATA controller); nil for other buses.
    public static func pciClass(_ alias: String) -> String? {
        // pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X
        guard alias.hasPrefix("pci:") else { return nil }
        let u = Array(alias.utf8)
        guard let i = u.indices.dropLast(7).first(where: { u[$0] == UInt8(ascii: "b") && u[$0 + 1] == UInt8(ascii: "c") }),
              u[i + 4] == UInt8(ascii: "s"), u[i + 5] == UInt8(ascii: "c") else { return nil }
        return String(decoding: u[(i + 2)..<(i + 4)] + u[(i + 6)..<(i + 8)], as: UTF8.self).uppercased()
    }

    /// The modaliases of bus devices no driver has claimed.
    public static func unclaimed(sys: String) -> Set<String> {
        var st = stat()
        return aliases(of: busDevices(sys: sys).filter { lstat($0 + "/driver", &st) != 0 })
    }

    static func aliases(of devices: [String]) -> Set<String> {
        Set(devices.compactMap { Files.readTrimmed($0 + "/modalias") }.filter { !$0.isEmpty })
    }

    static func busDevices(sys: String) -> [String] {
        Files.list(sys + "/bus").flatMap { bus in Files.list(sys + "/bus/" + bus + "/devices").map { sys + "/bus/" + bus + "/devices/" + $0 } }
    }

    /// True when a sysfs capability bitmap (hex words, most significant
    /// first, as in `capabilities/key`) has `bit` set.
    public static func hasKeyBit(_ caps: String, bit: Int) -> Bool {
        let words = caps.split(separator: " ").reversed().map { UInt64($0, radix: 16) ?? 0 }
        let w = bit / 64, b = bit % 64
        return w < words.count && (words[w] >> UInt64(b)) & 1 == 1
    }
}

/// A kernel uevent from the netlink socket: `ACTION@DEVPATH\0KEY=VALUE\0…`.
public struct Uevent: Equatable, Sendable {
    public var action: String
    public var devpath: String
    public var properties: [String: String]

    public init?(_ bytes: [UInt8]) {
        let parts = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let head = parts.first, let at = head.firstIndex(of: "@") else { return nil }
        action = String(head[..<at])
        devpath = String(head[head.index(after: at)...])
        var props: [String: String] = [:]
        for p in parts.dropFirst() {
            if let eq = p.firstIndex(of: "=") { props[String(p[..<eq])] = String(p[p.index(after: eq)...]) }
        }
        properties = props
    }

    public subscript(_ key: String) -> String? { properties[key] }
    public var subsystem: String? { properties["SUBSYSTEM"] }
}

public enum Network {
    /// The IPv4 addresses of every interface but lo.
    public static func addresses() -> [(interface: String, address: String)] {
        NetInterfaces.addresses().filter { !$0.v6 }.map { ($0.interface, String($0.cidr.prefix { $0 != "/" })) }
    }
}
