#if canImport(Glibc)
import Glibc
#endif
import Testing
import Platform
@testable import QEMU

/// The one-shot QMP call PID 1 uses at shutdown, against a scripted QMP peer
/// on a Unix socket: greeting, capabilities, an event in between, the reply
/// matched by its id.
@Suite struct QMPOneShotTests {
    /// Serves one connection: sends `script` lines as the peer reads commands.
    func peer(_ path: String, _ answer: @escaping @Sendable (String) -> [String]) throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: Array(path.utf8)); p[path.utf8.count] = 0 }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        listen(fd, 1)
        spawnThread {
            let c = accept(fd, nil, nil)
            close(fd)
            _ = try? Files.writeAll(c, Array(#"{"QMP": {"version": {}, "capabilities": []}}"#.utf8) + [10])
            var buf = [UInt8](repeating: 0, count: 4096)
            var pending = ""
            while true {
                let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                pending += String(decoding: buf[..<n], as: UTF8.self)
                while let nl = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<nl])
                    pending = String(pending[pending.index(after: nl)...])
                    for out in answer(line) { _ = try? Files.writeAll(c, Array(out.utf8) + [10]) }
                }
            }
            close(c)
        }
    }

    @Test func aCommandIsAnsweredByItsId() throws {
        let path = "/tmp/cb-qmp-oneshot-\(getpid()).sock"
        defer { unlink(path) }
        try peer(path) { line in
            if line.contains("qmp_capabilities") { return [#"{"return": {}, "id": 1}"#] }
            if line.contains("system_powerdown") {
                return [#"{"event": "POWERDOWN", "data": {}}"#, #"{"return": {}, "id": 2}"#]
            }
            return []
        }
        usleep(50_000)
        #expect(QMPOneShot.execute(socket: path, command: "system_powerdown", timeout: 3))
    }

    @Test func anErrorOrSilenceIsFalse() throws {
        let path = "/tmp/cb-qmp-oneshot-e-\(getpid()).sock"
        defer { unlink(path) }
        try peer(path) { line in
            if line.contains("qmp_capabilities") { return [#"{"return": {}, "id": 1}"#] }
            return [#"{"error": {"class": "GenericError", "desc": "no"}, "id": 2}"#]
        }
        usleep(50_000)
        #expect(!QMPOneShot.execute(socket: path, command: "cont", timeout: 3))
        #expect(!QMPOneShot.execute(socket: "/tmp/no-such-qmp.sock", command: "cont", timeout: 1))
    }

    /// An id or a `guest-sync` answer that no Int holds, or that is not
    /// whole, matches nothing (the agent's answers come from the guest; the
    /// first trapped, the second matched the id it was truncated to).
    @Test func numbersThatAreNoIdAreSkipped() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        let lines = [#"{"return": {}, "id": 1e999}"#, #"{"error": {"class": "GenericError", "desc": "x"}, "id": 1.5}"#,
                     #"{"return": {}, "id": 1}"#, #"{"return": -1e400}"#, #"{"return": 3.5}"#, #"{"return": 3}"#]
        let bytes = Array(lines.joined(separator: "\n").utf8) + [10]
        try Files.writeAll(fds[1], bytes)
        close(fds[1])
        defer { close(fds[0]) }
        var reader = JSONLineReader(fd: fds[0])
        let deadline = Clock.monotonic() + 3
        let replied = reader.reply(to: 1, deadline: deadline)
        let synced = reader.synced(to: 3, deadline: deadline)
        let again = reader.synced(to: 3, deadline: deadline)  // nothing is left
        #expect(replied == true && synced && !again)
    }
}
