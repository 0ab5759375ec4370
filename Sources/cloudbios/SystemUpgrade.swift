import Config
import Init
import Install
import Panel
import Platform
import Synchronization
import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// A/B upgrades of the installed system this daemon runs (under its PID 1):
/// `POST /api/v1/system/upgrade` and `cloudbios upgrade` get a CloudBIOS ISO
/// (uploaded or from a URL), its kernel, initramfs and payload go into the
/// slot not running (Install's `SystemSlots`), and GRUB tries that slot
/// once at the next boot. This boot's outcome of an earlier upgrade (the new
/// slot came up, or GRUB fell back to the old one) is settled once the panel
/// serves, and shown in `GET /api/v1/host`'s `system`.
struct SystemUpgrader: Sendable {
    let slots: SystemSlots
    let running: SystemSlot
    /// Where ISOs are kept while they are checked and written (on the data
    /// partition: an ISO is larger than a RAM disk should hold).
    let staging: String

    /// The most an upgrade ISO may be.
    static let limit: Int64 = 1 << 30
    static let outcome = Mutex<UpgradeOutcome?>(nil)

    /// The upgrader of this machine: an installed system whose system
    /// partition PID 1 mounted; nil elsewhere (an ISO boot, a daemon on
    /// another host).
    static func forThisMachine(config: String?, stateDir: String) -> SystemUpgrader? {
        let pid1 = Files.readLink("/proc/1/exe")
        guard pid1 != nil, pid1 == Files.readLink("/proc/self/exe"),
              case .installed(let root, _)? = BootMenu.target(configPath: config) else { return nil }
        return SystemUpgrader(slots: SystemSlots(root: root),
                              running: SystemSlot.running(cmdline: (try? Files.readString("/proc/cmdline")) ?? ""),
                              staging: stateDir + "/.upgrade")
    }

    /// Settles an earlier upgrade: called once the panel serves.
    func settle() {
        do {
            let o = try slots.settle(running: running)
            Self.outcome.withLock { $0 = o }
            if let o { Log.info("upgrade: \(o.message)") }
            Log.info("upgrade: running slot \(running.rawValue) (\(slots.version(running) ?? CloudBIOSVersion.string)); it is the good one")
        } catch {
            Log.warning("upgrade: the boot's outcome is not recorded in \(slots.envPath): \(error)")
        }
    }

    var json: JSONValue {
        slots.json(running: running, runningVersion: CloudBIOSVersion.string, outcome: Self.outcome.withLock { $0 })
    }

    /// Mounts the ISO at `iso` read-only, runs `body` on its files, unmounts.
    static func withISO<T>(_ iso: String, _ body: (UpgradeSource) throws -> T) throws -> T {
        let dir = "/run/cloudbios/upgrade-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        defer { _ = rmdir(dir) }
        _ = try? Launcher("/sbin/modprobe", ["-q", "isofs"]).run()
        do {
            try Mount.throughLoop(iso, on: dir, type: "iso9660", flags: UInt(MS_RDONLY | MS_NOSUID | MS_NODEV))
        } catch {
            throw UpgradeError.notCloudBIOS("the image is not a CloudBIOS ISO (it does not mount as an ISO 9660 filesystem: \(error))")
        }
        defer { try? Mount.unmount(dir) }
        return try body(try UpgradeSource.inspect(dir))
    }

    /// Checks the ISO and, when it is one, writes it into the other slot
    /// as a task (the ISO file is removed at the end either way).
    func start(iso: String, tasks: TaskBoard, task existing: TaskInfo? = nil) throws -> TaskInfo {
        let version: String
        do { version = try Self.withISO(iso) { $0.version } } catch { Files.remove(iso); throw error }
        let task = existing ?? tasks.begin("upgrade", on: "system")
        let (slots, running) = (self.slots, self.running)
        let target = running.other
        spawnThread {
            defer { Files.remove(iso) }
            tasks.update(task.id) { $0.state = .running; $0.message = "writing \(version) into slot \(target.rawValue)" }
            do {
                try Self.withISO(iso) { src in
                    try slots.install(src, into: target, running: running) { p, m in
                        tasks.update(task.id) { $0.progress = min(p, 99); $0.message = m }
                    }
                }
                Self.outcome.withLock { $0 = nil }
                let msg = "slot \(target.rawValue) holds \(version), verified; the next boot tries it once and falls back to slot \(running.rawValue) by itself if it does not reach a healthy panel"
                Log.info("upgrade: \(msg)")
                tasks.succeed(task.id, msg, result: .object(["slot": .string(target.rawValue), "version": .string(version),
                                                             "running": .string(running.rawValue)]))
            } catch {
                Log.error("upgrade: \(error)")
                tasks.fail(task.id, error)
            }
        }
        return task
    }

    /// `{"url": …}`: downloads the ISO, then as `start`.
    func start(url: String, tasks: TaskBoard) throws -> TaskInfo {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw RequestError.badRequest("'url' must be an http:// or https:// URL")
        }
        try Files.makeDirectories(staging)
        let iso = staging + "/download-\(UInt32.random(in: 0...UInt32.max)).iso"
        let task = tasks.begin("upgrade", on: "system")
        let me = self
        spawnThread {
            tasks.update(task.id) { $0.state = .running; $0.message = "downloading \(Names.clip(url))" }
            do {
                _ = try FileDownload.fetch(url, to: iso, limit: Self.limit) { n, total in
                    if let total, total > 0 { tasks.update(task.id) { $0.progress = Int(30 * n / total) } }
                }
                _ = try me.start(iso: iso, tasks: tasks, task: task)
            } catch {
                Files.remove(iso)
                Log.error("upgrade: \(error)")
                tasks.fail(task.id, error)
            }
        }
        return task
    }
}

/// The ISO as the raw body of `POST /api/v1/system/upgrade`, into a file on
/// the data partition; checked and written into the other slot on `finish`.
final class UpgradeUploadSession: @unchecked Sendable {
    let path: String
    let fd: Int32
    var written: Int64 = 0
    let upgrader: SystemUpgrader
    let tasks: TaskBoard
    var closed = false

    init(upgrader: SystemUpgrader, tasks: TaskBoard, expectedSize: Int64?) throws {
        if let n = expectedSize, n > SystemUpgrader.limit {
            throw RequestError(.tooLarge, "an upgrade ISO is at most \(Sizes.human(SystemUpgrader.limit))")
        }
        try Files.makeDirectories(upgrader.staging)
        let p = upgrader.staging + "/upload-\(UInt32.random(in: 0...UInt32.max)).iso"
        path = p
        fd = try syscall("create \(p)") { open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        self.upgrader = upgrader
        self.tasks = tasks
    }

    func write(_ chunk: UnsafeRawBufferPointer) throws {
        written += Int64(chunk.count)
        if written > SystemUpgrader.limit { throw RequestError(.tooLarge, "an upgrade ISO is at most \(Sizes.human(SystemUpgrader.limit))") }
        try Files.writeAll(fd, chunk, what: "write the upgrade ISO")
    }

    func finishUpgrade() throws -> TaskInfo {
        fsync(fd)
        close(fd)
        closed = true
        guard written > 0 else { Files.remove(path); throw RequestError.badRequest("send the CloudBIOS ISO as the body, or {\"url\": URL} as JSON") }
        return try upgrader.start(iso: path, tasks: tasks)
    }

    func abort() {
        if !closed { close(fd); closed = true }
        Files.remove(path)
    }
}
