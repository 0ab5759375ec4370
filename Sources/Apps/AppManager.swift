#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// Keeps the apps: each one an image booted in a QEMU `microvm` of its own
/// (daemonized, so it outlives the daemon), its files under
/// `STATE/apps/run/NAME/`: `app.json` (the spec, the image digest and
/// root filesystem, the launch, whether it was stopped on purpose),
/// `launch.img` (the launch disk app-init reads), `app.log` (the app's
/// stdout and stderr, appended across restarts, rotated at 8 MiB),
/// `console.log` (the guest kernel's), `ctl.sock` (app-init's control
/// port) and `qemu.pid`. A daemon started again finds the QEMUs still
/// running and takes them back; apps whose QEMU ended are restarted as
/// their policy says.
public actor AppManager {
    public struct Options: Sendable {
        public var stateDir: String
        public var insecureRegistries: Set<String> = []
        /// Who holds a host TCP port besides apps (the panel, a VM's forward); nil: nobody.
        public var portOwner: @Sendable (Int) async -> String? = { _ in nil }
        /// "kvm" or "tcg", once the host's KVM probe has said.
        public var accel: @Sendable () async -> String = { "tcg" }
        public var logLimit: Int64 = 8 << 20
        /// A kernel image for a kernel version whose modules are here but
        /// whose /boot/vmlinuz-VERSION is not (the PE's kernel is on its boot
        /// medium, not in its payload); nil: none.
        public var kernelImage: @Sendable (String) -> String? = { _ in nil }
        public init(stateDir: String) { self.stateDir = stateDir }
    }

    struct Record: Sendable {
        var spec: AppSpec
        var digest: String
        var rootfs: String
        var launch: AppLaunch
        var stoppedOnPurpose = false
        var pid: Int32?
        var exitCode: Int?
        var restarts = 0
        var message: String?
        var busy = false
    }

    let options: Options
    let cache: ImageCache
    var apps: [String: Record] = [:] {
        didSet { ports.set(apps.values.reduce(into: [:]) { m, r in for p in r.spec.ports { m[p.host] = r.spec.name } }) }
    }
    /// The host TCP ports apps hold, readable from any thread (a VM's
    /// forwards are checked against them).
    public nonisolated let ports: PortTable
    var creating: Set<String> = []
    var monitoring = false

    public init(options: Options, ports: PortTable = PortTable()) {
        self.options = options
        self.ports = ports
        cache = ImageCache(stateDir: options.stateDir)
    }

    var runRoot: String { cache.root + "/run" }
    func dir(_ name: String) -> String { runRoot + "/" + name }

    // MARK: queries

    public func list() -> [AppStatus] { apps.keys.sorted().map { status($0)! } }

    public func app(_ name: String) throws(AppError) -> AppStatus {
        guard let s = status(name) else { throw .appNotFound(name) }
        return s
    }

    func status(_ name: String) -> AppStatus? {
        guard let r = apps[name] else { return nil }
        let state: AppState = r.pid != nil ? .running : r.stoppedOnPurpose ? .stopped : r.message != nil ? .failed : .exited
        return AppStatus(spec: r.spec, state: state, pid: r.pid, digest: r.digest, exitCode: r.exitCode, restarts: r.restarts, message: r.message)
    }

    /// Host TCP ports apps forward: port → app.
    public func forwardedPorts() -> [Int: String] {
        var out: [Int: String] = [:]
        for (n, r) in apps { for p in r.spec.ports { out[p.host] = n } }
        return out
    }

    public func logPath(_ name: String) throws(AppError) -> String {
        guard apps[name] != nil else { throw .appNotFound(name) }
        return dir(name) + "/app.log"
    }

    /// The last `limit` bytes of the app's output.
    public func logs(_ name: String, limit: Int = 256 << 10) throws(AppError) -> [UInt8] {
        let path = try logPath(name)
        return Self.tail(path, limit: limit)
    }

    // MARK: lifecycle

    /// Pulls the image, then boots the app. Nothing is left behind when it fails.
    public func create(_ spec: AppSpec) async throws(AppError) -> AppStatus {
        guard apps[spec.name] == nil, !creating.contains(spec.name) else { throw .conflict("app '\(spec.name)' exists already") }
        try await checkPorts(spec)
        creating.insert(spec.name)
        defer { creating.remove(spec.name) }
        let puller = ImagePuller(cache: cache, insecure: options.insecureRegistries)
        let image = spec.image
        let pulled: PulledImage
        do {
            pulled = try await offload { () throws(AppError) -> PulledImage in try puller.pull(image) }
        }
        let launch = try AppLaunch(config: pulled.config, cmd: spec.cmd, env: spec.env, hostname: spec.name)
        var record = Record(spec: spec, digest: pulled.digest, rootfs: pulled.rootfs, launch: launch)
        let d = dir(spec.name)
        do {
            try Files.makeDirectories(d, mode: 0o700)
            try save(spec.name, record)
        } catch {
            Files.removeTree(d)
            throw .unavailable("\(d): \(error)")
        }
        do {
            record.pid = try await boot(spec.name, record)
        } catch {
            Files.removeTree(d)
            throw error
        }
        apps[spec.name] = record
        Log.info("app \(spec.name) started (\(spec.image), pid \(record.pid ?? 0))")
        startMonitor()
        return status(spec.name)!
    }

    /// Starts an app that is stopped or ended.
    public func start(_ name: String) async throws(AppError) -> AppStatus {
        guard var r = apps[name] else { throw .appNotFound(name) }
        guard r.pid == nil, !r.busy else { throw .conflict("app '\(name)' is running") }
        try await checkPorts(r.spec)
        apps[name]?.busy = true
        defer { apps[name]?.busy = false }
        r.stoppedOnPurpose = false
        r.message = nil
        r.exitCode = nil
        let pid = try await boot(name, r)
        apps[name]?.pid = pid
        apps[name]?.stoppedOnPurpose = false
        apps[name]?.message = nil
        apps[name]?.exitCode = nil
        try? save(name, apps[name]!)
        startMonitor()
        return status(name)!
    }

    /// Asks app-init to end the app (SIGTERM, SIGKILL after `timeout`), then
    /// ends QEMU if it is still there.
    public func stop(_ name: String, timeout: Double = 10) async throws(AppError) -> AppStatus {
        guard let r = apps[name] else { throw .appNotFound(name) }
        apps[name]?.stoppedOnPurpose = true
        try? save(name, apps[name]!)
        guard let pid = r.pid else { return status(name)! }
        let ctl = dir(name) + "/ctl.sock"
        _ = try? await offload { () throws(AppError) -> JSONValue in
            try ControlClient.request(ctl, .object(["op": .string("stop"), "timeout": .number(timeout)]), timeout: 3)
        }
        let deadline = Clock.monotonic() + timeout + 5
        while processAlive(pid), Clock.monotonic() < deadline { try? await Task.sleep(nanoseconds: 50_000_000) }
        if processAlive(pid) { kill(pid, SIGKILL) }
        while processAlive(pid) { try? await Task.sleep(nanoseconds: 20_000_000) }
        ended(name, pid: pid)
        return status(name)!
    }

    /// Stops the app and removes everything it had (its QEMU, run dir, logs).
    public func delete(_ name: String) async throws(AppError) {
        guard apps[name] != nil else { throw .appNotFound(name) }
        _ = try await stop(name, timeout: 3)
        apps[name] = nil
        Files.removeTree(dir(name))
        Log.info("app \(name) removed")
    }

    /// Runs a command in the app (its env, working directory and user).
    public func exec(_ name: String, _ cmd: [String], timeout: Double = 120) async throws(AppError) -> (exitCode: Int, stdout: String, stderr: String) {
        guard let r = apps[name] else { throw .appNotFound(name) }
        guard r.pid != nil else { throw .conflict("app '\(name)' is not running") }
        guard !cmd.isEmpty, !cmd[0].isEmpty else { throw .badRequest("'cmd' is a non-empty list of strings") }
        let ctl = dir(name) + "/ctl.sock"
        let answer = try await offload { () throws(AppError) -> JSONValue in
            try ControlClient.request(ctl, .object(["op": .string("exec"), "cmd": .array(cmd.map { .string($0) })]), timeout: timeout)
        }
        if let e = answer["error"]?.stringValue { throw .failed("app '\(name)': \(e)") }
        guard let code = answer["exit_code"]?.intValue else { throw .failed("app '\(name)': a malformed exec answer") }
        return (code, answer["stdout"]?.stringValue ?? "", answer["stderr"]?.stringValue ?? "")
    }

    /// Takes back the apps of a daemon that ran before: running QEMUs are
    /// watched again, ended ones restarted as their policy says (`always`;
    /// `on-failure` unless the app ended with 0; not `no`, nor an app
    /// stopped on purpose).
    public func reattach() async {
        for name in Files.list(runRoot).sorted() where Names.checkVM(name) == nil {
            let d = dir(name)
            guard let bytes = try? Files.read(d + "/app.json", limit: 1 << 20), let v = try? JSONValue.parse(bytes),
                  let spec = try? AppSpec.parse(v["spec"] ?? .null), let launch = try? AppLaunch.parse(Array((v["launch"] ?? .null).serialized().utf8)),
                  let digest = v["digest"]?.stringValue, let rootfs = v["rootfs"]?.stringValue else {
                Log.warning("app dir \(d) has no usable app.json; left alone")
                continue
            }
            var r = Record(spec: spec, digest: digest, rootfs: rootfs, launch: launch)
            r.stoppedOnPurpose = v["stopped"]?.boolValue ?? false
            r.restarts = v["restarts"]?.intValue ?? 0
            r.pid = livePID(name)
            if r.pid == nil { r.exitCode = Self.exitCode(fromLog: d + "/app.log") }
            apps[name] = r
            Log.info("app \(name): \(r.pid.map { "running (pid \($0)), reattached" } ?? "not running")")
            // what ended while no daemon watched (a host restart too: no exit code) starts as its policy says
            if r.pid == nil, !r.stoppedOnPurpose, spec.restart == .always || (spec.restart == .onFailure && r.exitCode != 0) {
                do { _ = try await start(name) } catch {
                    apps[name]?.message = "start failed: \(error)"
                    Log.error("app \(name): start failed: \(error)")
                }
            }
        }
        startMonitor()
    }

    // MARK: internals

    func checkPorts(_ spec: AppSpec) async throws(AppError) {
        for p in spec.ports {
            for (other, r) in apps where other != spec.name && r.spec.ports.contains(where: { $0.host == p.host }) {
                throw .conflict("host port tcp \(p.host) is forwarded to app '\(other)' already")
            }
            if let owner = await options.portOwner(p.host) { throw .conflict("host port tcp \(p.host) is taken by \(owner)") }
        }
    }

    func save(_ name: String, _ r: Record) throws {
        let v: JSONValue = .object([
            "spec": r.spec.json, "digest": .string(r.digest), "rootfs": .string(r.rootfs),
            "launch": r.launch.json, "stopped": .bool(r.stoppedOnPurpose), "restarts": .int(r.restarts),
        ])
        try Files.writeAtomically(dir(name) + "/app.json", v.serialized(pretty: true) + "\n", mode: 0o600)
    }

    /// The QEMU of an app, when its pidfile names a live process that is it.
    func livePID(_ name: String) -> Int32? {
        let d = dir(name)
        guard let text = Files.readTrimmed(d + "/qemu.pid"), let pid = Int32(text), processAlive(pid),
              let cmdline = try? Files.read("/proc/\(pid)/cmdline", limit: 1 << 20) else { return nil }
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains(where: { $0.contains(d + "/ctl.sock") }) ? pid : nil
    }

    /// Boots the app's microVM; its pid once QEMU has daemonized.
    func boot(_ name: String, _ r: Record) async throws(AppError) -> Int32 {
        let d = dir(name)
        let kernel = try AppInitramfs.hostKernel(elsewhere: options.kernelImage)
        let root = cache.root
        let initrd = try await offload { () throws(AppError) -> String in
            try AppInitramfs.ensure(cacheRoot: root, kernelVersion: kernel.version)
        }
        guard let qemu = Launcher.which("qemu-system-x86_64") else { throw .unavailable("qemu-system-x86_64 is not installed") }
        var launchBytes = Array(r.launch.json.serialized().utf8)
        launchBytes += [UInt8](repeating: 0, count: 4096 - launchBytes.count % 4096)
        let log = d + "/app.log"
        if let size = Files.size(log), size > options.logLimit { rename(log, log + ".1") }
        do {
            try Files.writeAtomically(d + "/launch.img", launchBytes, mode: 0o600)
            for f in ["ctl.sock", "qemu.pid"] { unlink(d + "/" + f) }
        } catch { throw .unavailable("\(d): \(error)") }
        // the initramfs is unpacked beside its archive before the archive
        // is freed: the guest gets that on top of the app's memory
        let overhead = Int(((Files.size(initrd) ?? 0) * 2 + (1 << 20) - 1) >> 20)
        let argv = MicroVM.arguments(dir: d, kernel: kernel.vmlinuz, initrd: initrd, rootfs: r.rootfs,
                                     spec: r.spec, accel: await options.accel(), extraMemory: overhead)
        let launcher = Launcher(qemu, argv)
        let qemuLog = d + "/qemu.log"
        let status: Int32
        do {
            status = try await offload { () throws(AppError) -> Int32 in
                do {
                    let out = try FileDescriptor.open(qemuLog, O_WRONLY | O_CREAT | O_TRUNC)
                    defer { out.close() }
                    return Launcher.wait(try launcher.spawn(stdout: out, stderr: out))
                } catch { throw .unavailable("start QEMU: \(error)") }
            }
        }
        let why = (Files.readTrimmed(qemuLog) ?? "").split(separator: "\n").suffix(3).joined(separator: "; ")
        guard status == 0 else {
            if why.contains("host forwarding") || why.contains("hostfwd") {
                throw .conflict("app '\(name)': a host port is in use by another program: \(Names.clip(why))")
            }
            throw .failed("QEMU failed to start app '\(name)' (exit \(status)): \(Names.clip(why))")
        }
        guard let pid = livePID(name) else { throw .failed("QEMU for app '\(name)' exited right after starting: \(Names.clip(why))") }
        return pid
    }

    /// Bookkeeping once an app's QEMU has ended.
    func ended(_ name: String, pid: Int32) {
        guard apps[name]?.pid == pid else { return }
        apps[name]?.pid = nil
        let code = Self.exitCode(fromLog: dir(name) + "/app.log")
        apps[name]?.exitCode = code
        if code == nil, apps[name]?.stoppedOnPurpose == false {
            let console = String(decoding: Self.tail(dir(name) + "/console.log", limit: 2048), as: UTF8.self)
            let last = console.split(separator: "\n").suffix(2).joined(separator: "; ")
            apps[name]?.message = "the microVM ended before its app did" + (last.isEmpty ? "" : " (guest console: \(Names.clip(last)))")
        }
        unlink(dir(name) + "/qemu.pid")
        unlink(dir(name) + "/ctl.sock")
    }

    func startMonitor() {
        guard !monitoring else { return }
        monitoring = true
        Task { await self.monitor() }
    }

    /// Notices apps whose QEMU ended and restarts them as their policy says.
    func monitor() async {
        while true {
            try? await Task.sleep(nanoseconds: 250_000_000)
            for (name, r) in apps {
                guard let pid = r.pid, !r.busy, !processAlive(pid) else { continue }
                ended(name, pid: pid)
                guard let now = apps[name] else { continue }
                Log.info("app \(name) ended (exit \(now.exitCode.map(String.init) ?? "unknown"))")
                let again = !now.stoppedOnPurpose && (now.spec.restart == .always || (now.spec.restart == .onFailure && now.exitCode != 0))
                guard again else { continue }
                apps[name]?.restarts += 1
                let delay = min(30.0, 0.5 * Double(1 << min(now.restarts, 6)))
                Task {
                    try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                    await self.restart(name)
                }
            }
        }
    }

    func restart(_ name: String) async {
        guard let r = apps[name], r.pid == nil, !r.stoppedOnPurpose else { return }
        do {
            _ = try await start(name)
            apps[name]?.restarts = r.restarts
            try? save(name, apps[name]!)
            Log.info("app \(name) restarted (\(r.restarts))")
        } catch {
            apps[name]?.message = "restart failed: \(error)"
            Log.error("app \(name): restart failed: \(error)")
        }
    }

    /// The code app-init wrote last on the log, if any.
    static func exitCode(fromLog path: String) -> Int? {
        let text = String(decoding: tail(path, limit: 4096), as: UTF8.self)
        guard let range = text.ranges(of: AppInit.exitMarker).last else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }

    static func tail(_ path: String, limit: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        let start = max(0, size - off_t(limit))
        lseek(fd, start, SEEK_SET)
        var out = [UInt8](repeating: 0, count: Int(size - start))
        var got = 0
        while got < out.count {
            let n = out[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            got += n
        }
        return Array(out[..<got])
    }
}

/// Host TCP port → app, behind a lock.
public final class PortTable: @unchecked Sendable {
    let lock = ConditionLock()
    var table: [Int: String] = [:]
    public init() {}
    func set(_ t: [Int: String]) { lock.withLock { table = t } }
    /// "app 'NAME'" for a port an app forwards; nil otherwise.
    public func holder(_ port: Int) -> String? { lock.withLock { table[port].map { "app '\($0)'" } } }
}

/// The QEMU command line of an app's microVM.
public enum MicroVM {
    /// The host's TSC rate, which a guest's TSC runs at (under TCG too). A
    /// microvm has no HPET or PM timer, and on a busy host the guest
    /// kernel's calibration against the PIT can fail, leaving it without a
    /// usable clock; given the rate it skips that calibration.
    static let hostTSCkHz: Int? = {
        if let t = Files.readTrimmed("/sys/devices/system/cpu/cpu0/tsc_freq_khz"), let k = Int(t), k > 0 { return k }
        for line in (Files.readTrimmed("/proc/cpuinfo") ?? "").split(separator: "\n") where line.hasPrefix("cpu MHz") {
            guard let v = line.split(separator: ":").last, let mhz = Double(v.filter { $0 != " " && $0 != "\t" }), mhz > 0 else { return nil }
            return Int(mhz * 1000)
        }
        return nil
    }()

    /// TCG's translated-code cache per app (QEMU's default is 1 GiB, filled
    /// as the guest runs: about 50 MiB of every app's RSS after a boot).
    static let tcgCodeCacheMiB = 32

    /// CLOUDBIOS_APP_TRACE=1 in the daemon's environment: the guest kernel's
    /// messages and app-init's steps on each app's console.log.
    static var trace: Bool { getenv("CLOUDBIOS_APP_TRACE").map { String(cString: $0) == "1" } ?? false }

    public static func arguments(dir d: String, kernel: String, initrd: String, rootfs: String, spec: AppSpec, accel: String,
                                 extraMemory: Int = 0) -> [String] {
        var fwd = "user,id=net0"
        for p in spec.ports { fwd += ",hostfwd=tcp::\(p.host)-:\(p.guest)" }
        return [
            "-name", "app-\(spec.name)",
            "-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on",
            "-accel", accel == "tcg" ? "tcg,tb-size=\(tcgCodeCacheMiB)" : accel, "-cpu", accel == "kvm" ? "host" : "max",
            "-m", "\(spec.memory + extraMemory)", "-smp", "\(spec.cpus)",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 \(trace ? "loglevel=7 cbapp=trace" : "quiet loglevel=3 cbapp=1") pci=off rdinit=/app-init panic=-1 reboot=t"
                + (hostTSCkHz.map { " tsc_early_khz=\($0)" } ?? ""),
            "-serial", "file:\(d)/console.log",
            "-drive", "id=root,file=\(rootfs),format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=root",
            "-drive", "id=launch,file=\(d)/launch.img,format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=launch",
            "-netdev", fwd, "-device", "virtio-net-device,netdev=net0",
            "-device", "virtio-serial-device,id=vs",
            "-chardev", "file,id=log,path=\(d)/app.log,append=on",
            "-device", "virtserialport,bus=vs.0,chardev=log,name=cb.log",
            "-chardev", "socket,id=ctl,path=\(d)/ctl.sock,server=on,wait=off",
            "-device", "virtserialport,bus=vs.0,chardev=ctl,name=cb.ctl",
            "-pidfile", "\(d)/qemu.pid", "-daemonize",
        ]
    }
}

/// One request to app-init's control port and its one-line answer.
enum ControlClient {
    static func request(_ socket: String, _ body: JSONValue, timeout: Double) throws(AppError) -> JSONValue {
        let fd: Int32
        switch connectUnix(socket) {
        case .success(let f): fd = f
        case .failure(let e): throw .failed("the app's control port: \(e)")
        }
        defer { close(fd) }
        do { try Files.writeAll(fd, Array((body.serialized() + "\n").utf8), what: "control request") } catch {
            throw .failed("the app's control port: \(error)")
        }
        let deadline = Clock.monotonic() + timeout
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while !got.contains(10) {
            let left = deadline - Clock.monotonic()
            guard left > 0 else { throw .failed("the app did not answer within \(Int(timeout)) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&p, 1, Int32(min(left, 1) * 1000))
            if rc < 0 && errno != EINTR { throw .failed("the app's control port: \(String(cString: strerror(errno)))") }
            if rc <= 0 { continue }
            let n = read(fd, &buf, buf.count)
            if n <= 0 { throw .failed("the app's control port closed") }
            got += buf[0..<n]
            if got.count > 8 << 20 { throw .failed("the app's answer is too long") }
        }
        do { return try JSONValue.parse(Array(got[..<got.firstIndex(of: 10)!])) } catch { throw .failed("a malformed answer from the app: \(error)") }
    }
}

/// Runs blocking work on an OS thread of its own, off the cooperative pool.
func offload<T: Sendable>(_ body: @escaping @Sendable () throws(AppError) -> T) async throws(AppError) -> T {
    let result: Result<T, AppError> = await withCheckedContinuation { k in
        spawnThread { k.resume(returning: Result { () throws(AppError) -> T in try body() }) }
    }
    return try result.get()
}
