import Config
import Disks
import Platform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Installs as tasks for the daemon (`POST /api/v1/install`,
/// `GET /api/v1/tasks/{id}`). One install at a time; dry runs are instant
/// and return the plan in `resultJSON`.
public final class Installer: Sendable {
    struct State {
        var tasks: [String: TaskInfo] = [:]
        var order: [String] = []
        var running: String?
        var next = 1
    }
    let state = Mutex(State())
    let config: CloudBIOSConfig
    let configText: String
    let sources: @Sendable () throws -> InstallSources
    let localUsers: @Sendable () -> [PanelUser]

    /// - Parameters:
    ///   - config: the running config (VM names for the boot menu, images).
    ///   - configText: its file text; the installed config partition gets it
    ///     without `install:`.
    ///   - sources: where the kernel, initramfs, GRUB and the image store are
    ///     (default: the boot medium and /var/lib/cloudbios/images).
    ///   - localUsers: the panel users made on this machine (first-run
    ///     setup, host console), read when an install starts; the installed
    ///     config partition gets them as `users.yaml`.
    public init(config: CloudBIOSConfig, configText: String,
                sources: @escaping @Sendable () throws -> InstallSources = { try Install.defaultSources(imageStore: "/var/lib/cloudbios/images") },
                localUsers: @escaping @Sendable () -> [PanelUser] = { [] }) {
        self.config = config
        self.configText = configText
        self.sources = sources
        self.localUsers = localUsers
    }

    /// `POST /api/v1/install` with `{"disk": selector, "wipe": bool,
    /// "dry_run": bool}`. Planning errors (no match, ambiguous, not empty
    /// without wipe, boot medium) are refused with the planner's message.
    public func startInstall(_ body: JSONValue, disks: [DiskInfo]? = nil) throws(InstallRefusal) -> TaskInfo {
        let install: InstallConfig, dryRun: Bool
        do { (install, dryRun) = try InstallConfig.decode(json: body.bytes) } catch { throw .body(error.description) }
        let plan: InstallPlan
        do { plan = try Planner.plan(install, disks: disks ?? Disks.list()) } catch { throw .plan(error) }
        if dryRun {
            var t = newTask()
            t.state = .succeeded; t.progress = 100; t.message = plan.text
            t.resultJSON = plan.json.serialized()
            save(t)
            return t
        }
        let src: InstallSources
        do { src = try sources() } catch { throw .sources("\(error)") }
        var srcWithImages = src
        srcWithImages.configImages = InstallSources.configImages(config)
        let request = InstallRequest(plan: plan, configText: Install.configTextWithoutInstall(configText),
                                     vms: config.vms.map(\.name), displayVM: config.displayVM?.name, sources: srcWithImages,
                                     localUsers: Install.usersText(localUsers()))
        var t = newTask()
        let busy = state.withLock { s -> String? in
            if let r = s.running { return r }
            s.running = t.id
            return nil
        }
        if let r = busy { throw .busy(task: r) }
        t.state = .running; t.message = "starting: \(plan.disk.label)"; t.resultJSON = plan.json.serialized()
        save(t)
        let id = t.id
        let hook = install.webhook.flatMap(Webhook.init)
        Background.run { [self] in
            let reporter = ProgressReporter(webhook: hook, log: { Log.info("install: \($0)") }, hostname: config.hostname)
            let exec = InstallExecutor(request) { ev in
                reporter.handle(ev)
                self.update(id) { t in
                    switch ev {
                    case .progress(let p, let m): t.progress = p; t.message = m
                    case .phase(let ph, _): t.message = ph.title
                    case .succeeded(let m): t.state = .succeeded; t.progress = 100; t.message = m
                    case .failed(let m): t.state = .failed; t.message = m
                    case .started: break
                    }
                }
            }
            do { try exec.run() } catch {
                self.update(id) { $0.state = .failed; $0.message = "\(error)" }
            }
            self.state.withLock { $0.running = nil }
        }
        return t
    }

    public func task(_ id: String) -> TaskInfo? { state.withLock { $0.tasks[id] } }
    public func tasks() -> [TaskInfo] { state.withLock { s in s.order.compactMap { s.tasks[$0] } } }

    func newTask() -> TaskInfo {
        state.withLock { s in
            let id = "install-\(s.next)"
            s.next += 1
            return TaskInfo(id: id, kind: "install", state: .pending)
        }
    }
    func save(_ t: TaskInfo) {
        state.withLock { s in
            if s.tasks[t.id] == nil { s.order.append(t.id) }
            s.tasks[t.id] = t
        }
    }
    func update(_ id: String, _ f: (inout TaskInfo) -> Void) {
        state.withLock { s in if var t = s.tasks[id] { f(&t); s.tasks[id] = t } }
    }
}

/// Progress to the log (serial console) in whole percents and to the
/// webhook (started, progress every 10%, succeeded, failed).
public final class ProgressReporter: @unchecked Sendable {
    let webhook: Webhook?
    let log: (String) -> Void
    let hostname: String?
    var lastPosted = -10
    var disk = ""

    public init(webhook: Webhook?, log: @escaping (String) -> Void, hostname: String? = nil) {
        self.webhook = webhook; self.log = log; self.hostname = hostname
    }

    public func handle(_ ev: InstallEvent) {
        switch ev {
        case .started(let plan):
            disk = plan.disk.path
            for line in plan.text.split(separator: "\n") { log(String(line)) }
            post("started", 0, "installing to \(plan.disk.label)")
        case .phase(let ph, let p):
            log("\(p)% \(ph.id.rawValue): \(ph.title)")
        case .progress(let p, let m):
            log("\(p)% \(m)")
            if p >= lastPosted + 10 && p < 100 { lastPosted = p - p % 10; post("progress", p, m) }
        case .succeeded(let m):
            log("100% \(m)")
            post("succeeded", 100, m)
        case .failed(let m):
            log("FAILED: \(m)")
            post("failed", nil, m)
        }
    }

    func post(_ event: String, _ percent: Int?, _ message: String) {
        guard let w = webhook else { return }
        var o: [String: JSONValue] = ["event": .string(event), "message": .string(message), "disk": .string(disk),
                                      "time": .int(Int(time(nil)))]
        if let p = percent { o["percent"] = .int(p) }
        if let h = hostname { o["hostname"] = .string(h) }
        let r = w.deliver(.object(o))
        if let s = r.status, !r.delivered {
            log("webhook \(w.origin) answered HTTP \(s) to \(event)")
        } else if r.status == nil {
            log("webhook \(w.origin) did not take \(event) after \(r.attempts) attempt\(r.attempts == 1 ? "" : "s"): \(r.error ?? "no answer")")
        }
    }
}

/// Headless installs (PID 1) and the CLI.
public enum Install {
    /// The default sources: the running PE's kernel and initramfs (boot
    /// medium, else images/out), GRUB from /usr/lib/grub.
    /// In the PE the installer's tools are in the payload, which may still
    /// be being mounted: waits for it first.
    public static func defaultSources(kernel: String? = nil, initramfs: String? = nil, imageStore: String? = nil) throws -> InstallSources {
        if let why = Payload.waitUsable() {
            throw InstallError.missingSource("the installer's tools (mke2fs, GRUB, …) are not available: \(why)")
        }
        var s = try InstallSources.locate(kernel: kernel, initramfs: initramfs)
        s.imageStore = imageStore
        if let t = getenv("TMPDIR").map({ String(cString: $0) }), Files.isDirectory(t) { s.stagingDir = t }
        return s
    }

    /// Installs as `config.install` says, without a person: plan on this
    /// machine's disks, log the plan and progress (percent lines) through
    /// `log`, post to the webhook. Returns true when the disk is installed;
    /// on false the reason has been logged and no disk outside the plan was
    /// touched. The caller then does `config.install.after` (reboot,
    /// poweroff, none).
    public static func runHeadless(config: CloudBIOSConfig, configPath: String,
                                   log: @escaping @Sendable (String) -> Void) async -> Bool {
        await withCheckedContinuation { cont in
            Background.run { cont.resume(returning: headless(config: config, configPath: configPath, log: log)) }
        }
    }

    /// The config partition's copy: the file without `install:`, newline-terminated
    /// (`version: 1` when the machine runs without a config file).
    public static func configTextWithoutInstall(_ text: String) -> String {
        var t = ConfigLoader.textWithoutInstall(text)
        while t.hasSuffix("\n\n") { t.removeLast() }
        if !t.hasSuffix("\n") { t += "\n" }
        if t.allSatisfy(\.isWhitespace) { t = "version: 1\n" }
        return t
    }

    /// `users.yaml` for the config partition; nil when there are none.
    static func usersText(_ users: [PanelUser]) -> String? {
        users.isEmpty ? nil : LocalUsers.render(users)
    }

    /// Synchronous form of `runHeadless` (blocks the calling thread).
    public static func headless(config: CloudBIOSConfig, configPath: String, target: String? = nil,
                                sources: InstallSources? = nil, disks: [DiskInfo]? = nil,
                                log: @escaping (String) -> Void) -> Bool {
        guard let install = config.install else { log("install: the config has no install: section"); return false }
        let hook = install.webhook.flatMap(Webhook.init)
        let reporter = ProgressReporter(webhook: hook, log: { log("install: \($0)") }, hostname: config.hostname)
        func refuse(_ m: String) -> Bool {
            for line in m.split(separator: "\n") { log("install: REFUSED: \(line)") }
            reporter.post("failed", nil, m)
            return false
        }
        let text: String
        do { text = try Files.readString(configPath) } catch { return refuse("cannot read \(configPath): \(error)") }
        let plan: InstallPlan
        do {
            let all = disks ?? Disks.list()
            let t = try target.map { p throws -> DiskInfo in try Disks.inspect(path: p) }
            plan = try Planner.plan(install, disks: all, target: t)
        } catch {
            return refuse("\(error)")
        }
        var src: InstallSources
        do { src = try sources ?? defaultSources(imageStore: "/var/lib/cloudbios/images") } catch { return refuse("\(error)") }
        src.configImages = InstallSources.configImages(config)
        // the users made on this machine beside the config come along
        let usersPath = Files.parent(of: configPath) + "/" + LocalUsers.fileName
        let users = (try? Files.readString(usersPath)).flatMap { try? LocalUsers.parse(path: usersPath, text: $0) } ?? []
        let req = InstallRequest(plan: plan, configText: Install.configTextWithoutInstall(text), vms: config.vms.map(\.name),
                                 displayVM: config.displayVM?.name, sources: src, localUsers: Install.usersText(users))
        do {
            try InstallExecutor(req, observe: reporter.handle).run()
            return true
        } catch {
            return false
        }
    }
}

/// Runs blocking work on its own thread (not the cooperative pool).
enum Background {
    static func run(_ f: @escaping @Sendable () -> Void) { spawnThread(f) }
}
