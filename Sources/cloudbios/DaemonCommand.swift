import ArgumentParser
import Config
import Platform
import VMManager
import Install
import Panel
import Fleet
import Apps
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios daemon`: the VM manager and the web panel. Runs on any Linux
/// host with QEMU; VMs keep running when it exits and are reattached when it
/// starts again.
struct DaemonCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the VM manager, the web panel and the REST API.")

    @Option(name: .long, help: "The config file (cloudbios.yaml).")
    var config: String?

    @Option(name: .customLong("state-dir"), help: "VM definitions, images, disks and run dirs.")
    var stateDir: String = "/var/lib/cloudbios"

    @Option(name: .long, help: "Panel listen address, overriding panel.listen (e.g. 127.0.0.1:8443).")
    var listen: String?

    @Option(name: .long, help: "How network: nat is provided: auto (cbnat0 when present), bridge (create cbnat0), user (QEMU user networking).")
    var nat: String = "auto"

    @Option(name: .customLong("web-root"), help: "Directory of the panel's static files.")
    var webRoot: String?

    @Option(name: .customLong("users-file"), help: "The machine's own panel users (users.yaml; default: beside --config, else in the state dir).")
    var usersFile: String?

    @Option(name: .customLong("setup-code-file"), help: "Where the first-run setup code is written for the local consoles (default: STATE_DIR/setup-code).")
    var setupCodeFile: String?

    @Option(name: .customLong("boot-medium"), help: "The disk CloudBIOS booted from; the first-run setup may add a CBCONFIG partition to it.")
    var bootMedium: String?

    @Option(name: .customLong("boot-menu"), help: "Keep GRUB's per-VM entries in this boot-menu.cfg (default: on the CBCONFIG volume or installed system the config came from, under CloudBIOS's PID 1).")
    var bootMenuFile: String?

    @Flag(name: .customLong("no-autostart"), help: "Do not start autostart VMs.")
    var noAutostart = false

    mutating func execute() async throws {
        Log.component = "cloudbios-daemon"
        signal(SIGPIPE, SIG_IGN)
        var cfg = CloudBIOSConfig()
        var configText = ""
        if let config {
            do { configText = try Files.readString(config) } catch { throw CLIError("\(config): \(error)") }
            do { cfg = try ConfigLoader.load(path: config, text: configText) } catch { throw CLIError(error.description) }
        }
        if let listen { cfg.panel.listen = listen }
        guard let natMode = NATMode(rawValue: nat) else { throw CLIError("--nat must be auto, bridge or user") }
        let dir = stateDir.hasPrefix("/") ? stateDir : Self.cwd() + "/" + stateDir

        var options = VMManagerOptions(stateDir: dir)
        options.nat = natMode
        options.bridgePort = cfg.network.bridgePort
        // https:// images: the system's CA store, or the usual override
        if let f = getenv("SSL_CERT_FILE"), f.pointee != 0 { options.trustFile = String(cString: f) }
        options.version = CloudBIOSVersion.string
        options.reservedPorts["tcp/\(cfg.panel.port)"] = "the panel"
        options.backupTarget = cfg.backups.target
        options.backupKeep = BackupKeep(last: cfg.backups.keepLast, daily: cfg.backups.keepDaily, weekly: cfg.backups.keepWeekly)
        let users = UserStore(path: usersFile ?? config.map { Files.parent(of: $0) + "/" + LocalUsers.fileName }
                                        ?? dir + "/" + LocalUsers.fileName)
        let configUsers = cfg.panel.users
        options.defaultSSHKeys = { (configUsers + users.load()).flatMap(\.sshAuthorizedKeys) }
        // apps and VMs may not forward the same host port
        let appPorts = PortTable()
        options.portHolder = { key in key.hasPrefix("tcp/") ? Int(key.dropFirst(4)).flatMap(appPorts.holder) : nil }
        let manager: VMManager
        do { manager = try VMManager(options: options) } catch { throw CLIError("state dir \(dir): \(error)") }

        // Running VMs, the config's images and VMs are known before anyone
        // can ask.
        await manager.reattach()
        // Image hashes, TLS and HTTP: in the PE these libraries come with
        // the payload, which PID 1 mounts beside the daemon's start.
        do { try TLSLibraries.load() } catch { throw CLIError(error.description) }
        // Local files are imported now; downloads (`url:`) run in the
        // background once the panel answers, each with a deadline: a slow
        // or hostile image server delays nothing else.
        let downloads = cfg.images.filter { $0.file == nil && $0.url != nil }
        _ = await manager.importImages(cfg.images.filter { !($0.file == nil && $0.url != nil) }, baseDirectory: cfg.baseDirectory)
        await manager.announceDownloads(downloads)
        for f in await manager.applyConfig(cfg.vms) { Log.error(f) }
        // The panel answers next; the KVM probe and host networking
        // (cbnat0, masquerading) are worked out beside it; whoever needs
        // them (GET /host, starting a VM) waits for that one result.
        let imageStore = dir + "/images"
        let installer = Installer(config: cfg, configText: configText,
                                  sources: { try Install.defaultSources(imageStore: imageStore) },
                                  localUsers: { users.load() })
        let bootMenu = await BootMenuSync.start(config: config, file: bootMenuFile, manager: manager)
        let apps = AppManager(options: Self.appOptions(dir, panelPort: cfg.panel.port, manager: manager, hostname: cfg.hostname, config: config),
                              ports: appPorts)
        await apps.reattach()
        // the config's apps are pulled and started beside the panel
        let appEntries = cfg.apps
        Task { for f in await apps.applyConfig(appEntries) { Log.error(f) } }
        var backend = VMManagerBackend(manager: manager, hostname: cfg.hostname, installer: installer,
                                       membership: FleetMembership(configFile: config, config: cfg, stateDir: dir),
                                       bootMenu: bootMenu, apps: apps)
        backend.network = cfg.network.interfaces
        let upgrader = SystemUpgrader.forThisMachine(config: config, stateDir: dir)
        backend.upgrader = upgrader
        backend.fleet = try await DaemonFleet.start(cfg, stateDir: dir, manager: manager)

        let medium = bootMedium
        var setup = FirstRun.Options(codeFile: setupCodeFile ?? dir + "/setup-code", saveBlocker: BootStick.blocker(disk: medium))
        if let medium, setup.saveBlocker == nil {
            setup.saveToStick = { files in
                try BootStick.addConfigPartition(disk: medium, files: files, mountDir: "/run/cloudbios/media/\(BootStick.label)-saved") { Log.info($0) }
            }
        }
        let panel = try startPanel(cfg, stateDir: dir, webRoot: webRoot, backend: backend, users: users, firstRun: setup)
        if let fleet = backend.fleet {
            do {
                let c = try fleet.apiCertificate()
                try startFleetListener(address: fleet.address, certPEM: c.cert, keyPEM: c.key)
            } catch { throw CLIError("fleet \(fleet.cluster.name): node API on \(fleet.address):\(Fleet.apiPort): \(error)") }
        }
        // the panel serves: this slot is the good one (an upgrade into it came up)
        if panel != nil { upgrader?.settle() }
        let host = await manager.host(hostname: cfg.hostname)
        Log.info("accel: \(host.accel) (\(host.accelReason))")
        let waiting = noAutostart ? [] : await manager.autostart()
        await BootMenuSync.startChosenVM(manager)
        Log.info("ready: state dir \(dir)" + (panel.map { ", panel \($0)" } ?? ""))
        let baseDirectory = cfg.baseDirectory
        Task {
            // failures are logged, and the VMs needing those images say why
            _ = await manager.importImages(downloads, baseDirectory: baseDirectory)
            if !waiting.isEmpty { await manager.autostart(waiting) }
        }
        let serialLogs = Task {
            while !Task.isCancelled {
                await manager.rotateSerialLogs()
                try? await Task.sleep(nanoseconds: 5_000_000_000)
            }
        }

        let backupSchedule = cfg.backups.schedule.map { at in Task { await manager.runBackupSchedule(hour: at.hour, minute: at.minute) } }

        await Self.waitForTermination()
        backupSchedule?.cancel()
        Log.info("exiting; running VMs keep running and are reattached at the next start")
        serialLogs.cancel()
        await manager.detach()
        stopPanel()
        backend.fleet?.stop()
    }

    static func cwd() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return "/" }
        return String(nulTerminated: buf)
    }

    /// Blocks until SIGTERM or SIGINT (a self-pipe written by the handler,
    /// so it works whichever thread the signal lands on).
    static func waitForTermination() async {
        guard let (r, w) = try? FileDescriptor.pipe() else { return }
        TerminationPipe.writeFD = w.rawValue
        signal(SIGTERM) { _ in var b: UInt8 = 1; _ = write(TerminationPipe.writeFD, &b, 1) }
        signal(SIGINT) { _ in var b: UInt8 = 1; _ = write(TerminationPipe.writeFD, &b, 1) }
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            spawnThread {
                var b: UInt8 = 0
                _ = try? withUnsafeMutableBytes(of: &b) { try r.read(into: $0) }
                k.resume()
            }
        }
    }
}

enum TerminationPipe {
    nonisolated(unsafe) static var writeFD: Int32 = -1
}

