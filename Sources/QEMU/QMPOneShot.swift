#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// One QMP command on a VM's socket, synchronously, for callers without the
/// daemon's long-lived `QMPClient` (PID 1's shutdown): greeting,
/// capabilities, the command; replies matched by id, events skipped.
public enum QMPOneShot {
    /// Whether QEMU answered `return` within `timeout` seconds (`quit` may
    /// close the socket before it answers, which counts as done).
    public static func execute(socket path: String, command: String, timeout: Double = 3) -> Bool {
        guard case .success(let fd) = connectUnix(path) else { return false }
        defer { close(fd) }
        let deadline = Clock.monotonic() + timeout
        var reader = JSONLineReader(fd: fd)
        guard let greeting = reader.next(deadline: deadline), greeting["QMP"] != nil else { return false }
        guard send(fd, "qmp_capabilities", id: 1), reader.reply(to: 1, deadline: deadline) == true else { return false }
        guard send(fd, command, id: 2) else { return false }
        return reader.reply(to: 2, deadline: deadline) ?? (command == "quit")
    }

    static func send(_ fd: Int32, _ command: String, id: Int) -> Bool {
        let msg = JSONValue.object(["execute": .string(command), "id": .int(id)]).serialized() + "\n"
        return (try? Files.writeAll(fd, Array(msg.utf8))) != nil
    }
}

/// Newline-delimited JSON from a socket (QMP, the guest agent), with a
/// deadline for each wait and a bound on what is buffered.
struct JSONLineReader {
    let fd: Int32
    var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    /// The next JSON line; nil past the deadline, at EOF or on garbage.
    mutating func next(deadline: Double) -> JSONValue? {
        guard let l = line(deadline: deadline) else { return nil }
        return try? JSONValue.parse(Array(l.utf8))
    }

    /// true for the `return` of `id`, false for its `error`, nil when
    /// nothing came (events and other replies are skipped).
    mutating func reply(to id: Int, deadline: Double) -> Bool? {
        while let v = next(deadline: deadline) {
            guard v["id"]?.intValue == id else { continue }
            return v["return"] != nil
        }
        return nil
    }

    /// Whether the agent's `return` of `guest-sync` `id` came (replies to
    /// older syncs, and anything else, before it are skipped).
    mutating func synced(to id: Int, deadline: Double) -> Bool {
        while let v = next(deadline: deadline) {
            if v["return"]?.intValue == id { return true }
        }
        return false
    }

    mutating func line(deadline: Double) -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let l = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                // the guest agent may send a 0xFF sentinel byte after a sync
                let trimmed = l.unicodeScalars.filter { $0.value != 0xFFFD && $0.value != 0xFF }
                if trimmed.isEmpty { continue }
                return String(String.UnicodeScalarView(trimmed))
            }
            let left = deadline - Clock.monotonic()
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
