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
}
