import Testing
@testable import Config

/// The JSON writer against a plain reference writer (the one over Swift
/// strings, scalar by scalar, that it replaced): the same text for random
/// values full of the characters that need escaping, compact and pretty.
@Suite struct JSONWriterTests {
    /// The reference: every rule spelled out on Unicode scalars.
    static func reference(_ v: JSONValue, pretty: Bool, indent: Int = 0) -> String {
        func str(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if u.value < 0x20 || u.value == 0x7f || u.value == 0x2028 || u.value == 0x2029 {
                        let h = String(u.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                    } else {
                        out.unicodeScalars.append(u)
                    }
                }
            }
            return out + "\""
        }
        let pad = { (n: Int) in "\n" + String(repeating: "  ", count: n) }
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d):
            if !d.isFinite { return "null" }
            if d.rounded() == d && abs(d) < 1e15 { return String(Int64(d)) }
            return "\(d)"
        case .string(let s): return str(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            let items = a.map { (pretty ? pad(indent + 1) : "") + reference($0, pretty: pretty, indent: indent + 1) }
            return "[" + items.joined(separator: ",") + (pretty ? pad(indent) : "") + "]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            let items = o.keys.sorted().map {
                (pretty ? pad(indent + 1) : "") + str($0) + (pretty ? ": " : ":") + reference(o[$0]!, pretty: pretty, indent: indent + 1)
            }
            return "{" + items.joined(separator: ",") + (pretty ? pad(indent) : "") + "}"
        }
    }

    struct Rand {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
    }

    static let pieces: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{1f}", "\u{7f}",
                                   "\u{80}", "\u{9f}", "é", "e\u{301}", "\u{2028}", "\u{2029}", "\u{2027}", "\u{202a}", "€",
                                   "😀", "👩‍💻", "\u{fffd}", "\u{e2}\u{80}"]

    static func string(_ r: inout Rand) -> String {
        var s = ""
        for _ in 0..<r.next(12) { s += pieces[r.next(pieces.count)] }
        return s
    }

    static func value(_ r: inout Rand, depth: Int) -> JSONValue {
        switch r.next(depth > 3 ? 4 : 6) {
        case 0: return [.null, .bool(true), .bool(false)][r.next(3)]
        case 1:
            let numbers: [Double] = [0, -0.0, 1, -1, 42, 1e15, 1e15 - 1, -1e15 + 1, 1e15 + 2, 0.5, -2.25, 1e-7, 3.14159,
                                     .infinity, -.infinity, .nan, Double(Int64.max), 9007199254740993, 123456789012345]
            return .number(numbers[r.next(numbers.count)] * (r.next(2) == 0 ? 1 : Double(r.next(1000))))
        case 2, 3: return .string(string(&r))
        case 4: return .array((0..<r.next(4)).map { _ in value(&r, depth: depth + 1) })
        default:
            var o: [String: JSONValue] = [:]
            for _ in 0..<r.next(5) { o[string(&r)] = value(&r, depth: depth + 1) }
            return .object(o)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func writesWhatTheReferenceWrites(seed: UInt64) {
        var r = Rand(state: seed)
        for _ in 0..<300 {
            let v = JSONWriterTests.value(&r, depth: 0)
            for pretty in [false, true] {
                let want = JSONWriterTests.reference(v, pretty: pretty)
                #expect(v.serialized(pretty: pretty) == want)
                #expect(v.bytes(pretty: pretty) == Array(want.utf8))
            }
        }
    }

    // The VM JSON as it was built member by member into a dictionary.
    static func reference(_ d: DiskSpec) -> JSONValue {
        var o: [String: JSONValue] = [:]
        if let id = d.id { o["id"] = .string(id) }
        if let image = d.image { o["image"] = .string(image) }
        if let size = d.size { o["size"] = .string(Sizes.format(size)) }
        return .object(o)
    }

    static func reference(_ v: VMSpec) -> JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(v.name), "memory": .int(v.memory), "cpus": .int(v.cpus),
            "disks": .array(v.disks.map(reference)), "firmware": .string(v.firmware.rawValue),
            "network": .string(v.network.rawValue), "accel": .string(v.accel.rawValue),
            "autostart": .bool(v.autostart), "order": .int(v.order), "display": .bool(v.display),
        ]
        if let kernel = v.kernel { o["kernel"] = .string(kernel) }
        if let initrd = v.initrd { o["initrd"] = .string(initrd) }
        if let append = v.append { o["append"] = .string(append) }
        if let cdrom = v.cdrom { o["cdrom"] = .string(cdrom) }
        if let cloudInit = v.cloudInit { o["cloud_init"] = cloudInit.json }
        o["forwards"] = .array(v.forwards.map { .object(["host": .int($0.host), "guest": .int($0.guest), "proto": .string($0.proto.rawValue)]) })
        o["agent"] = .bool(v.agent)
        if let boot = v.boot { o["boot"] = .array(boot.map { .string($0.rawValue) }) }
        return .object(o)
    }

    static func reference(_ s: VMStatus) -> JSONValue {
        guard case .object(var o) = reference(s.spec) else { return .null }
        o["state"] = .string(s.state.rawValue)
        if let pid = s.pid { o["pid"] = .int(Int(pid)) }
        if let message = s.message { o["message"] = .string(message) }
        if let accel = s.accel { o["accel_in_use"] = .string(accel) }
        if let cpuPercent = s.cpuPercent { o["cpu_percent"] = .number((cpuPercent * 10).rounded() / 10) }
        if let memoryUsedMiB = s.memoryUsedMiB { o["memory_used_mib"] = .int(memoryUsedMiB) }
        if let uptimeSeconds = s.uptimeSeconds { o["uptime_seconds"] = .int(uptimeSeconds) }
        o["addresses"] = .array(s.addresses.map {
            .object(["interface": .string($0.interface), "address": .string($0.address), "prefix": .int($0.prefix),
                     "family": .string($0.family), "source": .string($0.source)])
        })
        return .object(o)
    }

    static func status(_ r: inout Rand) -> VMStatus {
        func maybe<T>(_ v: @autoclosure () -> T) -> T? { r.next(2) == 0 ? nil : v() }
        var v = VMSpec(name: string(&r))
        v.memory = r.next(1 << 20)
        v.cpus = r.next(64)
        v.kernel = maybe(string(&r))
        v.initrd = maybe(string(&r))
        v.append = maybe(string(&r))
        v.cdrom = maybe(string(&r))
        let sizes: [Int64] = [1, 512, 1 << 20, 3 << 30, 8 << 30, 1 << 40, (1 << 30) + 1, 123456789]
        v.disks = (0..<r.next(4)).map { _ in DiskSpec(id: maybe(string(&r)), image: maybe(string(&r)), size: maybe(sizes[r.next(sizes.count)])) }
        v.firmware = Firmware.allCases[r.next(Firmware.allCases.count)]
        v.network = NetworkMode.allCases[r.next(NetworkMode.allCases.count)]
        v.accel = Accel.allCases[r.next(Accel.allCases.count)]
        v.autostart = r.next(2) == 0
        v.order = r.next(200) - 100
        v.display = r.next(2) == 0
        if r.next(3) == 0 {
            var c = CloudInitSpec()
            c.hostname = maybe(string(&r))
            c.user = maybe(string(&r))
            c.sshAuthorizedKeys = (0..<r.next(3)).map { _ in string(&r) }
            c.passwordHash = maybe(string(&r))
            c.userData = maybe(string(&r))
            if r.next(2) == 0 { c.network = .staticIPv4(address: string(&r), gateway: maybe(string(&r)), dns: [string(&r)]) }
            v.cloudInit = c
        }
        v.forwards = (0..<r.next(3)).map { _ in PortForward(host: r.next(65536), guest: r.next(65536), proto: r.next(2) == 0 ? .tcp : .udp) }
        v.boot = maybe((0..<r.next(3)).map { _ in BootDevice.allCases[r.next(2)] })
        v.agent = r.next(2) == 0
        var s = VMStatus(spec: v, state: VMState.allCases[r.next(VMState.allCases.count)])
        s.pid = maybe(Int32(r.next(1 << 22)))
        s.message = maybe(string(&r))
        s.accel = maybe(["kvm", "tcg"][r.next(2)])
        s.cpuPercent = maybe([0, 0.04, 0.05, 12.34, 99.99, 100, 250.5, 1e-9][r.next(8)])
        s.memoryUsedMiB = maybe(r.next(1 << 16))
        s.uptimeSeconds = maybe(r.next(1 << 30))
        s.addresses = (0..<r.next(3)).map { _ in
            GuestAddress(interface: string(&r), address: string(&r), prefix: r.next(129), family: ["ipv4", "ipv6"][r.next(2)],
                         source: ["agent", "dhcp"][r.next(2)])
        }
        return s
    }

    @Test(arguments: [11, 12, 13, 14])
    func vmJSONIsWhatItWasMemberByMember(seed: UInt64) {
        var r = Rand(state: seed)
        var list: [VMStatus] = []
        for _ in 0..<200 {
            let s = JSONWriterTests.status(&r)
            list.append(s)
            #expect(s.json == JSONWriterTests.reference(s))
            var b: [UInt8] = []
            s.writeJSON(into: &b)
            #expect(b == JSONWriterTests.reference(s).bytes)
            #expect(s.spec.json == JSONWriterTests.reference(s.spec))
            #expect(s.spec.json.serialized(pretty: true) == JSONWriterTests.reference(s.spec).serialized(pretty: true))
            for d in s.spec.disks { #expect(d.json == JSONWriterTests.reference(d)) }
        }
        var b: [UInt8] = []
        list.writeJSON(into: &b)
        #expect(b == JSONValue.array(list.map(JSONWriterTests.reference)).bytes)
        b = []
        [VMStatus]().writeJSON(into: &b)
        #expect(b == Array("[]".utf8))
    }

    @Test func escapesLineSeparatorsAndControls() {
        #expect(JSONValue.string("a\u{2028}b\u{2029}\u{7f}\u{0}").serialized() == #""a\u2028b\u2029\u007f\u0000""#)
        #expect(JSONValue.array([.number(-12), .number(1e15), .number(1e15 - 1), .number(0.5)]).serialized() == "[-12,1000000000000000.0,999999999999999,0.5]")
    }
}
