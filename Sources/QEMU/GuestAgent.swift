#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// The qemu-guest-agent on a VM's virtio-serial channel (`qga.sock`): one
/// short blocking exchange at a time. The agent has no greeting; a
/// `guest-sync` with a fresh id first skips any reply a timed-out caller
/// left behind.
public enum GuestAgent {
    /// Runs one command; its `return` value, or nil when the agent does not
    /// answer within `timeout` (not installed, still booting).
    public static func execute(socket path: String, _ command: String, arguments: JSONValue? = nil,
                               timeout: Double = 2) -> JSONValue? {
        guard case .success(let fd) = connectUnix(path) else { return nil }
        defer { close(fd) }
        let deadline = Monotonic.now + timeout
        let id = Int.random(in: 1...Int(Int32.max))
        var reader = LineReader(fd: fd)
        guard send(fd, .object(["execute": .string("guest-sync"), "arguments": .object(["id": .int(id)])])) else { return nil }
        // replies to older syncs may come first
        while true {
            guard let line = reader.line(deadline: deadline), let v = try? JSONValue.parse(Array(line.utf8)) else { return nil }
            if case .number(let n)? = v["return"], Int(n) == id { break }
        }
        var msg: [String: JSONValue] = ["execute": .string(command)]
        if let arguments { msg["arguments"] = arguments }
        guard send(fd, .object(msg)) else { return nil }
        guard let line = reader.line(deadline: deadline), let v = try? JSONValue.parse(Array(line.utf8)) else { return nil }
        return v["return"]
    }

    /// Sends a command that never replies (`guest-shutdown`) after a sync
    /// showed the agent is there; whether it was sent.
    public static func send(socket path: String, _ command: String, arguments: JSONValue? = nil, timeout: Double = 2) -> Bool {
        guard case .success(let fd) = connectUnix(path) else { return false }
        defer { close(fd) }
        let id = Int.random(in: 1...Int(Int32.max))
        var reader = LineReader(fd: fd)
        guard send(fd, .object(["execute": .string("guest-sync"), "arguments": .object(["id": .int(id)])])) else { return false }
        let deadline = Monotonic.now + timeout
        while true {
            guard let line = reader.line(deadline: deadline), let v = try? JSONValue.parse(Array(line.utf8)) else { return false }
            if case .number(let n)? = v["return"], Int(n) == id { break }
        }
        var msg: [String: JSONValue] = ["execute": .string(command)]
        if let arguments { msg["arguments"] = arguments }
        return send(fd, .object(msg))
    }

    /// The guest's addresses (loopback and link-local left out).
    public static func addresses(socket path: String, timeout: Double = 2) -> [GuestAddress]? {
        guard case .array(let ifaces)? = execute(socket: path, "guest-network-get-interfaces", timeout: timeout) else { return nil }
        return parseAddresses(ifaces)
    }

    static func parseAddresses(_ ifaces: [JSONValue]) -> [GuestAddress] {
        var out: [GuestAddress] = []
        for i in ifaces {
            guard let name = i["name"]?.stringValue, name != "lo", case .array(let ips)? = i["ip-addresses"] else { continue }
            for ip in ips {
                guard let a = ip["ip-address"]?.stringValue, let t = ip["ip-address-type"]?.stringValue,
                      case .number(let p)? = ip["prefix"] else { continue }
                if a.hasPrefix("127.") || a == "::1" || a.lowercased().hasPrefix("fe80:") { continue }
                out.append(GuestAddress(interface: name, address: a, prefix: Int(p), family: t, source: "agent"))
            }
        }
        return out
    }

    static func send(_ fd: Int32, _ v: JSONValue) -> Bool {
        let bytes = Array((v.serialized() + "\n").utf8)
        return (try? Files.writeAll(fd, bytes)) != nil
    }

    /// Reads newline-ended lines with a deadline.
    struct LineReader {
        let fd: Int32
        var buffer: [UInt8] = []

        mutating func line(deadline: Double) -> String? {
            while true {
                if let nl = buffer.firstIndex(of: 10) {
                    let l = String(decoding: buffer[..<nl], as: UTF8.self)
                    buffer.removeSubrange(...nl)
                    // the agent may send a 0xFF sentinel byte after a sync
                    let trimmed = l.unicodeScalars.filter { $0.value != 0xFFFD && $0.value != 0xFF }
                    if trimmed.isEmpty { continue }
                    return String(String.UnicodeScalarView(trimmed))
                }
                let left = deadline - Monotonic.now
                guard left > 0, buffer.count < 1 << 20 else { return nil }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, Int32(left * 1000) + 1) > 0 else { return nil }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { return nil }
                buffer += chunk[..<n]
            }
        }
    }
}
