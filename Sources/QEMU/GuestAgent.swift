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
        exchange(socket: path, command, arguments: arguments, timeout: timeout) { reader, deadline in
            reader.next(deadline: deadline)?["return"]
        } ?? nil
    }

    /// Sends a command that never replies (`guest-shutdown`) after a sync
    /// showed the agent is there; whether it was sent.
    public static func send(socket path: String, _ command: String, arguments: JSONValue? = nil, timeout: Double = 2) -> Bool {
        exchange(socket: path, command, arguments: arguments, timeout: timeout) { _, _ in true } ?? false
    }

    /// Connects, syncs (replies to older syncs may come first), sends
    /// `command` and lets `answer` read what follows; nil when the agent is
    /// not there or the command could not be sent.
    static func exchange<T>(socket path: String, _ command: String, arguments: JSONValue?, timeout: Double,
                            answer: (inout JSONLineReader, Double) -> T) -> T? {
        guard case .success(let fd) = connectUnix(path) else { return nil }
        defer { close(fd) }
        let deadline = Clock.monotonic() + timeout
        let id = Int.random(in: 1...Int(Int32.max))
        var reader = JSONLineReader(fd: fd)
        guard send(fd, .object(["execute": .string("guest-sync"), "arguments": .object(["id": .int(id)])])),
              reader.synced(to: id, deadline: deadline) else { return nil }
        var msg: [String: JSONValue] = ["execute": .string(command)]
        if let arguments { msg["arguments"] = arguments }
        guard send(fd, .object(msg)) else { return nil }
        return answer(&reader, deadline)
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
                      let p = ip["prefix"]?.intValue else { continue }  // the guest's numbers are not trusted to fit
                if a.hasPrefix("127.") || a == "::1" || a.lowercased().hasPrefix("fe80:") { continue }
                out.append(GuestAddress(interface: name, address: a, prefix: p, family: t, source: "agent"))
            }
        }
        return out
    }

    static func send(_ fd: Int32, _ v: JSONValue) -> Bool {
        let bytes = Array((v.serialized() + "\n").utf8)
        return (try? Files.writeAll(fd, bytes)) != nil
    }
}
