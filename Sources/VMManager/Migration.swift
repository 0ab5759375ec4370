#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU

/// What a live migration moved, as QEMU reports it.
public struct MigrationResult: Sendable, Equatable {
    /// The guest's pause at the switch-over, ms (`query-migrate` downtime).
    public var downtimeMs: Int
    /// RAM sent, bytes.
    public var ramBytes: Int64
    /// Disk contents mirrored, bytes.
    public var diskBytes: Int64
    /// QEMU's whole migration time, ms (the RAM part).
    public var totalMs: Int
}

/// Live migration, both ends, through QMP: the destination starts the same
/// argv (`QEMUCommand`) with `-incoming defer`, serves the VM's disks over
/// NBD and waits; the source mirrors each disk into those exports
/// (`drive-mirror`, until in step), migrates RAM (`migrate`, until
/// `completed`) and ends the mirrors consistent; the destination stops its
/// NBD server and runs the guest. The guest runs throughout but for the
/// switch-over's pause.
extension VMManager {
    /// Destination: defines the VM and starts its QEMU waiting for the
    /// migration on `address`; the ports it listens on (RAM, and NBD
    /// when the VM has disks). Anything failing undoes what was done.
    public func prepareIncoming(_ spec: VMSpec, address: String) async throws -> (port: Int, nbdPort: Int?) {
        let name = spec.name
        _ = try create(spec)
        do {
            _ = try await start(name, paused: false, incoming: true)
            guard let qmp = runtimes[name]?.qmp else { throw VMError.startFailed("VM '\(name)': no QMP after an incoming start") }
            var nbd: Int?
            if !(specs[name]?.disks ?? []).isEmpty {
                let port = try Self.freePort(address)
                try await qmp.execute("nbd-server-start", arguments: .object([
                    "addr": .object(["type": .string("inet"), "data": .object(["host": .string(address), "port": .string(String(port))])])]))
                for d in specs[name]?.disks ?? [] {
                    try await qmp.execute("nbd-server-add", arguments: .object(["device": .string("disk-\(d.id ?? "")"), "writable": .bool(true)]))
                }
                nbd = port
            }
            let port = try Self.freePort(address)
            try await qmp.execute("migrate-incoming", arguments: .object(["uri": .string("tcp:\(address):\(port)")]))
            Log.info("VM \(name): waiting for a live migration on \(address):\(port)" + (nbd.map { ", disks on NBD port \($0)" } ?? ""))
            return (port, nbd)
        } catch {
            await abortIncoming(name)
            throw error
        }
    }

    /// Destination, once the source says the migration completed: the
    /// guest runs here.
    public func finishIncoming(_ name: String) async throws -> VMStatus {
        guard let qmp = runtimes[name]?.qmp else { throw VMError.notRunning(name: name) }
        let deadline = Clock.monotonic() + 30
        while true {
            let st = try await qmp.execute("query-migrate")["status"]?.stringValue ?? ""
            if st == "completed" { break }
            if st == "failed" || Clock.monotonic() > deadline {
                throw VMError.conflict("VM '\(name)': the incoming migration is \(st.isEmpty ? "not there" : st)")
            }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        if !(specs[name]?.disks ?? []).isEmpty { try await qmp.execute("nbd-server-stop") }
        try await qmp.execute("cont")
        await refreshState(name)
        Log.info("VM \(name): migrated in, running")
        return try vm(name)
    }

    /// Destination, when the migration failed: its QEMU and definition go.
    public func abortIncoming(_ name: String) async {
        if runtimes[name] != nil { _ = try? await stop(name) }
        try? delete(name)
    }

    /// Source: mirrors the disks to `host`'s NBD exports, migrates RAM to
    /// `host:port`, waits for `completed` and ends the mirrors. On failure
    /// everything is cancelled and the guest keeps running here.
    public func migrateOut(_ name: String, host: String, port: Int, nbdPort: Int?,
                           progress: @escaping @Sendable (Double, String) -> Void) async throws -> MigrationResult {
        guard let spec = specs[name], let rt = runtimes[name], let qmp = rt.qmp else { throw VMError.notRunning(name: name) }
        guard rt.state == .running else { throw VMError.conflict("VM '\(name)' is \(rt.state.rawValue); only a running VM migrates live") }
        var jobs: [String] = []
        var migrating = false
        do {
            if !spec.disks.isEmpty {
                guard let nbdPort else { throw VMError.conflict("VM '\(name)': the destination serves no disks") }
                for d in spec.disks {
                    let id = d.id ?? ""
                    try await qmp.execute("drive-mirror", arguments: .object([
                        "job-id": .string("migrate-\(id)"), "device": .string("disk-\(id)"),
                        "target": .string("nbd://\(host):\(nbdPort)/disk-\(id)"), "sync": .string("full"),
                        "mode": .string("existing"), "format": .string("raw")]))
                    jobs.append("migrate-\(id)")
                }
                progress(0.05, "mirroring \(jobs.count) disk(s)")
                // each mirror in step before RAM moves
                let deadline = Clock.monotonic() + 3600
                while true {
                    let list = try await qmp.execute("query-block-jobs").arrayValue ?? []
                    let mine = list.filter { jobs.contains($0["device"]?.stringValue ?? "") }
                    if mine.count < jobs.count { throw VMError.conflict("VM '\(name)': a disk mirror ended early") }
                    if mine.allSatisfy({ $0["ready"]?.boolValue == true }) { break }
                    let len = mine.reduce(Int64(0)) { $0 + Int64($1["len"]?.intValue ?? 0) }
                    let off = mine.reduce(Int64(0)) { $0 + Int64($1["offset"]?.intValue ?? 0) }
                    if len > 0 { progress(0.05 + 0.45 * Double(off) / Double(len), "mirroring disks") }
                    if Clock.monotonic() > deadline { throw VMError.conflict("VM '\(name)': the disk mirror did not catch up") }
                    try await Task.sleep(nanoseconds: 20_000_000)
                }
            }
            try await qmp.execute("migrate-set-capabilities", arguments: .object(["capabilities": .array([
                .object(["capability": .string("events"), "state": .bool(true)])])]))
            try await qmp.execute("migrate", arguments: .object(["uri": .string("tcp:\(host):\(port)")]))
            migrating = true
            progress(0.5, "migrating RAM")
            var info: JSONValue = .null
            while true {
                info = try await qmp.execute("query-migrate")
                let st = info["status"]?.stringValue ?? ""
                if st == "completed" { break }
                if st == "failed" || st == "cancelled" {
                    throw VMError.conflict("VM '\(name)': migration \(st): \(info["error-desc"]?.stringValue ?? "")")
                }
                if let total = info["ram"]?["total"]?.intValue, total > 0, let left = info["ram"]?["remaining"]?.intValue {
                    progress(0.5 + 0.45 * Double(total - left) / Double(total), "migrating RAM")
                }
                try await Task.sleep(nanoseconds: 10_000_000)
            }
            var disk: Int64 = 0
            for j in jobs {
                if let job = (try? await qmp.execute("query-block-jobs"))?.arrayValue?.first(where: { $0["device"]?.stringValue == j }) {
                    disk += Int64(job["len"]?.intValue ?? 0)
                }
                // a mirror in step, cancelled, ends with the target consistent
                try await qmp.execute("block-job-cancel", arguments: .object(["device": .string(j)]))
            }
            return MigrationResult(downtimeMs: info["downtime"]?.intValue ?? 0, ramBytes: Int64(info["ram"]?["transferred"]?.intValue ?? 0),
                                   diskBytes: disk, totalMs: info["total-time"]?.intValue ?? 0)
        } catch {
            if migrating { _ = try? await qmp.execute("migrate_cancel") }
            for j in jobs { _ = try? await qmp.execute("block-job-cancel", arguments: .object(["device": .string(j), "force": .bool(true)])) }
            // a guest paused by a switch-over that then failed runs on
            if let st = try? await qmp.execute("query-status"), st["status"]?.stringValue != "running" {
                _ = try? await qmp.execute("cont")
            }
            await refreshState(name)
            throw error
        }
    }

    /// Source, when a migration failed after its switch-over (the
    /// destination did not take the guest over, and dropped its copy): the
    /// guest, paused here since, runs on from there. Whether it runs.
    public func resumeAfterMigration(_ name: String) async -> Bool {
        guard let qmp = runtimes[name]?.qmp else { return false }
        _ = try? await qmp.execute("cont")
        await refreshState(name)
        let running = (try? await qmp.execute("query-status"))?["status"]?.stringValue == "running"
        if running { Log.info("VM \(name): resumed here after a failed migration") }
        return running
    }

    /// Source, once the destination runs the guest: its QEMU here quits
    /// and the definition and disks here go.
    public func migratedAway(_ name: String) async {
        _ = try? await stop(name)
        try? delete(name)
        Log.info("VM \(name): migrated away")
    }

    /// The VM's definition (for the destination of a migration).
    public func spec(_ name: String) throws(VMError) -> VMSpec {
        guard let s = specs[name] else { throw .notFound(name: name) }
        return s
    }

    /// A TCP port free on `address` now.
    static func freePort(_ address: String) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: currentErrno()) }
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = 0
        guard inet_pton(AF_INET, address, &a.sin_addr) == 1 else { throw VMError.badRequest("'\(address)' is not an IPv4 address") }
        let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw SystemError("bind \(address)", errno: currentErrno()) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: a.sin_port))
    }
}
