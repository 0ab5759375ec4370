#if canImport(Glibc)
import Glibc
#endif
import CInit
import Platform
import Config
import Install
import Disks
import QEMU
import Synchronization

/// PID 1 of the CloudBIOS PE. Off-target (`root` set) the hardware phases are
/// skipped and every path is read below `root`, so tests can run the boot
/// against a fake kernel. The boot's phases hand their results on as
/// arguments and publish them to `state`, the one owner of what is read
/// after the boot. The volume mounts, probes and the payload's mount have
/// owners of their own with a lock; the remaining members are the main
/// loop's (its file descriptors, the supervisor), used on its thread only.
public final class PE: @unchecked Sendable {
    public enum Mode: Equatable, Sendable {
        case pe
        case offTarget(root: String)
    }

    public let mode: Mode
    public let version: String
    public let executable: String
    public let stateDir: String
    public let console: InitConsole
    public private(set) var supervisor: Supervisor!

    /// What the phases produced, and what changes after the boot, for the
    /// main loop, the status screen and the payload's thread. The phases
    /// themselves take what they need as arguments and return what they
    /// produce; the accessors below are for reading after the boot.
    public let state = PEState()

    /// The config phase's result.
    public var configOutcome: ConfigOutcome { state.read { $0.config } }
    /// The config file found, valid or not.
    public var configPath: String? { configOutcome.location?.path }
    public var configSource: String? { configOutcome.location?.source }
    public var configError: String? { configOutcome.error }
    public var hostname: String { state.read { $0.hostname } }
    public var displayVM: String? { state.read { $0.displayVM } }
    public var completedPhases: [String] { state.read { $0.completedPhases } }
    /// Where the payload came from ("initramfs" or the squashfs path); nil
    /// when it is missing or the core has none.
    public var payloadSource: String? { state.read { $0.payloadSource } }
    /// Reads and parses a config file, once: the config or its problems.
    public var readConfig: (String) -> Result<CloudBIOSConfig, ConfigReadError> = ConfigPhase.parse
    /// How `cloudbios.config=http(s)://…` is downloaded.
    public var configFetch = ConfigFetch()
    /// How `cloudbios.config=metadata` reads the cloud's user-data.
    public var metadataFetch = MetadataFetch()

    var ueventFD: Int32 = -1
    var signalFD: Int32 = -1
    /// Exits of children (services) and orphans the `Reaper` reports to
    /// the main loop, from `run()` on.
    var exits: ChildExits?
    /// Read ends of the services' stdout/stderr pipes: fd -> (service, pending bytes).
    var outputs: [Int32: (name: String, buffer: [UInt8])] = [:]
    var inputFDs: [Int32: String] = [:]
    /// Modaliases modprobe has been run for (uevents for them are not re-run).
    var coldplugAliases: Set<String> = []
    /// Volumes probed as their devices appear during coldplug.
    let volumeCache = VolumeCache()
    /// The payload's mount, started once the volumes are known.
    let payloadMount = PayloadMount()
    /// Every volume mount of this boot, made once and shared.
    let mounts = VolumeMounts()
    var lastStatus: StatusInfo?
    /// When PID 1 last handled a uevent of a USB device or interface: USB
    /// buses enumerate after the others, and the volume scan lets them settle.
    var lastUSBEvent = 0.0
    var shutdownRequested: ShutdownKind?

    public init(mode: Mode, version: String, executable: String = "/usr/bin/cloudbios",
                stateDir: String = "/var/lib/cloudbios") {
        self.mode = mode
        self.version = version
        self.executable = executable
        self.stateDir = stateDir
        self.console = InitConsole(offTarget: mode != .pe)
        self.supervisor = Supervisor(clock: Clock.monotonic, spawner: { [unowned self] in try self.spawn($0) },
                                     log: { [unowned self] in self.log($0) })
    }

    var root: String {
        if case .offTarget(let r) = mode { return r }
        return ""
    }
    var onTarget: Bool { mode == .pe }

    public func log(_ s: String) { console.log(s) }

    // MARK: boot

    /// Runs the phases of `BootSequence` in order, each given what the
    /// earlier ones produced; a failing phase is logged and the boot goes
    /// on with what it leaves (nothing: the fallback the next phase takes).
    /// Each result is published to `state` as it is produced.
    public func boot() {
        step("mounts") { try mountPseudoFilesystems() }
        step("console") { openConsole() }
        let cmdline = step("cmdline") { readCommandLine() } ?? KernelCommandLine("")
        state.update { $0.cmdline = cmdline }
        step("modules") { loadModules() }
        step("hotplug") { startHotplug() }
        step("network") { startNetwork() }
        let volumes = step("volumes") { scanVolumes(cmdline) } ?? []
        state.update { $0.volumes = volumes }
        let config = step("config") { findConfig(cmdline, volumes: volumes) } ?? .none
        state.update { $0.config = config }
        step("interfaces") { applyNetworkConfig(config) }
        step("payload") { mountPayload(cmdline, config: config) }
        step("hostname") { setHostname(config) }
        let storage = step("storage") { mountStorage(volumes) }
        state.update { $0.storage = storage }
        step("install") { runInstall(cmdline, config: config) }
        step("services") { planServices(cmdline, volumes: volumes, config: config) }
        step("status") { showStatus() }
    }

    /// Runs the phase `name` of `BootSequence` (skipped off-target when it
    /// is a hardware phase): its result, nil when skipped or failed.
    @discardableResult
    func step<T>(_ name: String, _ body: () throws -> T) -> T? {
        guard let phase = BootSequence.phases.first(where: { $0.name == name }) else {
            log("boot: no phase \(name)")
            return nil
        }
        if phase.hardware && !onTarget { return nil }
        let t0 = Clock.monotonic()
        var result: T?
        do {
            result = try body()
        } catch {
            log("\(name): \(error) (continuing)")
        }
        state.update { $0.completedPhases.append(name) }
        let dt = Clock.monotonic() - t0
        if dt > 0.2 { log("\(name): done in \(Supervisor.format(dt)) s") }
        return result
    }

    func mountPseudoFilesystems() throws {
        let ms: [(String, String, String, UInt, String)] = [
            ("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), ""),
            ("sysfs", "/sys", "sysfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), ""),
            ("devtmpfs", "/dev", "devtmpfs", UInt(MS_NOSUID), "mode=0755"),
            ("devpts", "/dev/pts", "devpts", UInt(MS_NOSUID | MS_NOEXEC), "gid=5,mode=0620,ptmxmode=0666"),
            ("tmpfs", "/dev/shm", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=1777"),
            ("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755"),
            ("tmpfs", "/tmp", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=1777"),
        ]
        var failures: [String] = []
        let mounted = Set(Mount.table().map(\.target))
        for (src, target, type, flags, opts) in ms where !mounted.contains(target) {
            do { try Mount.mount(src, on: target, type: type, flags: flags, options: opts) }
            catch { failures.append("\(error)") }
        }
        try? Files.makeDirectories("/run/cloudbios")
        try? Files.makeDirectories("/var/lib/cloudbios")
        if !failures.isEmpty { throw InitError(failures.joined(separator: "; ")) }
    }

    func openConsole() {
        console.open()
        // stdin/stdout/stderr of PID 1 (and so Log) on /dev/console.
        let fd = open("/dev/console", O_RDWR | O_NOCTTY)
        if fd >= 0 { dup2(fd, 0); dup2(fd, 1); dup2(fd, 2); if fd > 2 { close(fd) } }
        log("CloudBIOS \(version) starting (PID \(getpid()))")
        _ = cb_init_disable_cad()
        if let s = Files.readTrimmed("/proc/version") { log("kernel: \(s.split(separator: " ").prefix(3).joined(separator: " "))") }
    }

    func readCommandLine() -> KernelCommandLine {
        let cmdline = KernelCommandLine((try? Files.readString(root + "/proc/cmdline")) ?? "")
        log("cmdline: \(cmdline.arguments.joined(separator: " "))")
        quietKernelConsole(cmdline)
        return cmdline
    }

    /// The kernel's messages below warnings (a loop device's size, a NIC's
    /// link: info and notice) stay in its log (dmesg) and off the consoles,
    /// where they landed in the middle of PID 1's lines; errors and warnings
    /// still show. `quiet`, `loglevel=`, `debug` or `ignore_loglevel` on the
    /// command line keep the kernel's choice.
    func quietKernelConsole(_ cmdline: KernelCommandLine) {
        let chosen = cmdline.arguments.contains { $0.hasPrefix("loglevel=") || ["quiet", "debug", "ignore_loglevel"].contains($0) }
        guard onTarget, !chosen else { return }
        let fd = open("/proc/sys/kernel/printk", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = write(fd, "5", 1)  // console_loglevel 5: emergency … warning
        close(fd)
    }

    // MARK: modules

    func loadModules() {
        let before = Set(loadedModules())
        // Loaded with the first drivers, ahead of the devices that need
        // them: the CD-ROM driver with the ATA drivers (the drive an ISO
        // boots from is claimed the moment the controller's probe creates
        // it, not after a rescan and a modprobe of its own; sd_mod is not
        // loaded ahead, its T10 checksum dependencies are slow to start and
        // many machines have no SCSI disk); with the other drivers the
        // config volumes' filesystems, what the payload is mounted with
        // (loop, squashfs), the power button and evdev. Others (tun, bridge)
        // load on demand through the kernel's modprobe helper and their
        // modules.alias entries.
        let cdrom = ["sr_mod", "isofs"]
        var extra = ["vfat", "nls_cp437", "nls_ascii", "loop", "squashfs", "button", "evdev"]
        // (KVM is in the payload of an ISO; a PXE initramfs carries it here)
        extra += Self.kvmModules(cpuinfo: (try? Files.readString("/proc/cpuinfo")) ?? "")
        // Drivers load as soon as their device shows up: the sysfs tree is
        // scanned again every 50 ms while modprobe runs, so a device a driver
        // creates (virtio disks and NICs behind virtio_pci) does not wait for
        // a slower driver loading beside it (the CD-ROM's ATA stack).
        openUeventSocket()
        var seen = Set<String>()
        var running: [pid_t] = []
        var deferred = Set<String>()
        let t0 = Clock.monotonic()
        while true {
            let aliases = Modalias.scan(sys: root + "/sys").subtracting(seen)
            seen.formUnion(aliases)
            // Display drivers (PCI class 03) set modes and take over the
            // console, which is slow and needed only by the viewer; CPU-feature
            // aliases give optimized crypto and checksums; psmouse probes the
            // PS/2 port for a second. None of them is waited for, and they
            // start only once the rest has loaded, so they take no CPU from
            // the storage and network drivers the panel waits for.
            let display = aliases.filter { Modalias.pciClass($0)?.hasPrefix("03") == true || $0.hasPrefix("cpu:") || $0.hasPrefix("serio:") }
            deferred.formUnion(display)
            // two modprobe processes side by side (module init is mostly CPU
            // bound under emulation); dependencies shared by both are loaded once
            let list = aliases.subtracting(display).sorted()
            let groups: [[String]]
            if extra.isEmpty {
                groups = [Array(list.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)),
                          Array(list.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))]
            } else {
                // At first the ATA and SATA controllers' drivers get a
                // process of their own, followed by the CD-ROM driver (ready
                // when the probe finds the drive), and the other storage
                // controllers (virtio, NVMe, USB) lead the other: probing
                // their ports and buses takes time but little CPU, so both
                // probes run while the rest loads.
                let ata = list.filter { Self.isStorageController($0, ataOnly: true) }
                let storage = list.filter { Self.isStorageController($0) && !ata.contains($0) }
                groups = [ata + cdrom,
                          storage + list.filter { !Self.isStorageController($0) } + extra]
                extra = []
            }
            for group in groups where !group.isEmpty {
                if let pid = try? Launcher("/sbin/modprobe", ["-a", "-q", "-b"] + group).spawn() { running.append(pid) }
                else { log("modules: cannot run modprobe") }
            }
            running = running.filter { Reaper.shared.exitStatus($0) == nil }
            // disks and partitions are probed as they appear
            if onTarget { volumeCache.prefetch(sys: root + "/sys", dev: root + "/dev") }
            if running.isEmpty && aliases.isEmpty { break }
            if Clock.monotonic() - t0 > 30 {
                log("modules: drivers still loading after 30 s; going on")
                running.forEach(Reaper.shared.detach)
                break
            }
            usleep(50_000)
        }
        coldplugAliases = seen
        if !deferred.isEmpty { try? Launcher("/sbin/modprobe", ["-a", "-q", "-b"] + deferred.sorted()).spawnDetached() }
        let loaded = loadedModules().filter { !before.contains($0) }
        log("modules: \(seen.count) device aliases; loaded \(loaded.count): \(loaded.sorted().joined(separator: " "))")
        for dev in Files.list("/sys/bus/pci/devices") where !Files.exists("/sys/bus/pci/devices/\(dev)/driver") {
            let p = "/sys/bus/pci/devices/\(dev)/"
            if let alias = Files.readTrimmed(p + "modalias"), deferred.contains(alias) { continue }  // still loading
            let cls = Files.readTrimmed(p + "class") ?? "?"
            if cls.hasPrefix("0x0600") || cls.hasPrefix("0x0601") || cls.hasPrefix("0x0604") || cls.hasPrefix("0x0680") { continue }
            log("modules: no driver for PCI \(dev) [\(Files.readTrimmed(p + "vendor") ?? "?"):\(Files.readTrimmed(p + "device") ?? "?")] class \(cls)")
        }
    }

    /// The storage, network and USB controllers without a driver, as the
    /// status screen names them.
    static func devicesWithoutDriver(sys: String = "/sys") -> [String] {
        Files.list(sys + "/bus/pci/devices").sorted().compactMap { dev -> String? in
            let p = sys + "/bus/pci/devices/\(dev)/"
            guard !Files.exists(p + "driver"), let cls = Files.readTrimmed(p + "class") else { return nil }
            let kind: String
            switch cls.dropFirst(2).prefix(4).lowercased() {
            case "0100": kind = "SCSI controller"
            case "0101": kind = "IDE controller"
            case "0104": kind = "RAID controller"
            case "0106": kind = "SATA controller"
            case "0107": kind = "SAS controller"
            case "0108": kind = "NVMe controller"
            case "0c03": kind = "USB controller"
            default:
                if cls.dropFirst(2).hasPrefix("01") { kind = "storage controller" }
                else if cls.dropFirst(2).hasPrefix("02") { kind = "network controller" }
                else { return nil }
            }
            let id = (Files.readTrimmed(p + "vendor") ?? "?").dropFirst(2) + ":" + (Files.readTrimmed(p + "device") ?? "?").dropFirst(2)
            return "PCI \(dev) [\(id)] \(kind)"
        }
    }

    /// Whether a modalias is a PCI storage controller's (class 01: IDE,
    /// SATA, NVMe, SCSI, virtio-blk) or a USB host controller's (0C03);
    /// with `ataOnly`, an IDE (0101) or SATA (0106) controller's.
    static func isStorageController(_ alias: String, ataOnly: Bool = false) -> Bool {
        guard let cls = Modalias.pciClass(alias) else { return false }
        if ataOnly { return cls == "0101" || cls == "0106" }
        return cls.hasPrefix("01") || cls == "0C03"
    }

    func loadedModules() -> [String] {
        ((try? Files.readString("/proc/modules")) ?? "").split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    // MARK: hotplug

    /// The uevent socket is opened before coldplug, so a device that shows
    /// up after the last scan (a CD-ROM behind an ATA port probed
    /// asynchronously) is not missed.
    func openUeventSocket() {
        guard ueventFD < 0 else { return }
        ueventFD = cb_init_uevent_socket()
    }

    func startHotplug() {
        try? Files.writeAtomically("/proc/sys/kernel/hotplug", "")
        openUeventSocket()
        if ueventFD < 0 { log("hotplug: cannot open the uevent socket: \(SystemError("socket", errno: currentErrno()))") }
        else { log("hotplug: listening for uevents") }
        openInputDevices()
    }

    func handleUevents() {
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(ueventFD, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            guard let ev = Uevent(Array(buf[..<n])) else { continue }
            handle(ev)
        }
    }

    func handle(_ ev: Uevent) {
        if ev.subsystem == "usb" { lastUSBEvent = Clock.monotonic() }
        guard ev.action == "add" else {
            if ev.action == "remove" && ev.subsystem == "block" && ev["DEVTYPE"] == "disk" { log("hotplug: disk /dev/\(ev["DEVNAME"] ?? "?") removed") }
            return
        }
        if let alias = ev["MODALIAS"], !coldplugAliases.contains(alias) {
            coldplugAliases.insert(alias)
            try? Launcher("/sbin/modprobe", ["-q", "-b", alias]).spawnDetached()
        }
        switch ev.subsystem {
        case "block" where ev["DEVTYPE"] == "disk":
            // the loop driver makes eight unused devices when it loads
            let name = ev["DEVNAME"] ?? "?"
            if name.hasPrefix("loop") && !Files.exists("/sys/block/\(name)/loop/backing_file") { break }
            log("hotplug: disk /dev/\(name) appeared")
        case "net":
            if let iface = ev["INTERFACE"] { configureNewInterface(iface) }
        case "input":
            openInputDevices()
        default: break
        }
    }

    /// Watches event devices that can send KEY_POWER (the ACPI power button).
    func openInputDevices() {
        for name in Files.list("/dev/input") where name.hasPrefix("event") {
            let path = "/dev/input/" + name
            if inputFDs.values.contains(path) { continue }
            let caps = Files.readTrimmed("/sys/class/input/\(name)/device/capabilities/key") ?? ""
            guard Modalias.hasKeyBit(caps, bit: 116) else { continue }
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 {
                inputFDs[fd] = path
                log("power button: watching \(path) (\(Files.readTrimmed("/sys/class/input/\(name)/device/name") ?? "?"))")
            }
        }
    }

    // MARK: network

    func startNetwork() {
        _ = run("/sbin/ip", ["link", "set", "lo", "up"])
        let nics = Files.list("/sys/class/net").filter(isWired)
        if nics.isEmpty { log("network: no wired network interface found") }
        for n in nics { startDHCP(n) }
    }

    func isWired(_ iface: String) -> Bool {
        let p = root + "/sys/class/net/" + iface
        return iface != "lo" && Files.exists(p + "/device") && !Files.exists(p + "/wireless") && !Files.exists(p + "/phy80211")
            && (Files.readTrimmed(p + "/type") ?? "1") == "1"
    }

    /// Applies the network change the host console asked for: a static
    /// address replaces the interface's DHCP client, `dhcp` brings it back.
    /// Checked again here: the file is input like any other.
    func applyNetworkRequest() {
        guard let text = Files.readTrimmed(PE.networkRequestFile) else { return }
        Files.remove(PE.networkRequestFile)
        let f = text.split(separator: " ").map(String.init)
        guard f.count >= 2, Names.checkInterface(f[0]) == nil, Files.exists("/sys/class/net/" + f[0]) else {
            log("network: console: no interface '\(Names.clip(f.first ?? ""))'; nothing changed")
            return
        }
        let iface = f[0], address = f[1]
        if address == "dhcp" {
            log("network: console: \(iface) back to DHCP")
            _ = run("/sbin/ip", ["-4", "addr", "flush", "dev", iface])
            state.update { $0.addressed.remove(iface) }
            startDHCP(iface)
            return
        }
        let gateway = f.count > 2 && f[2] != "-" ? f[2] : nil
        let dns = Array(f.dropFirst(3))
        guard IPv4.isCIDR(address), gateway.map(IPv4.isAddress) ?? true, dns.allSatisfy(IPv4.isAddress) else {
            log("network: console: '\(Names.clip(text))' is not an address, gateway and DNS servers; nothing changed")
            return
        }
        stopDHCP(iface)
        _ = run("/sbin/ip", ["-4", "addr", "flush", "dev", iface])
        _ = run("/sbin/ip", ["link", "set", iface, "up"])
        let rc = run("/sbin/ip", ["addr", "add", address, "dev", iface])
        if let g = gateway { _ = run("/sbin/ip", ["route", "replace", "default", "via", g, "dev", iface]) }
        if !dns.isEmpty { try? Files.writeAtomically("/etc/resolv.conf", dns.map { "nameserver \($0)\n" }.joined()) }
        log("network: console: \(iface) static \(address)" + (gateway.map { " gateway \($0)" } ?? "") + (dns.isEmpty ? "" : " dns \(dns.joined(separator: " "))")
            + (rc == 0 ? "" : " (ip failed with status \(rc))"))
        refreshStatus(force: true)
    }

    /// Applies `network.interfaces` when the config lists interfaces (the
    /// default, DHCP everywhere, is running already): the `NetworkPlan`'s
    /// steps, each logged when it fails.
    /// The list in effect for NICs that appear later; nil: DHCP everywhere.
    func applyNetworkConfig(_ config: ConfigOutcome) -> [InterfaceConfig]? {
        guard let cfg = config.config, case .list(let entries) = cfg.network.interfaces else { return nil }
        state.update { $0.interfaces = entries }
        let plan = NetworkPlan.make(cfg.network.interfaces, nics: wiredNICs())
        run(plan, what: "network.interfaces")
        refreshStatus(force: true)
        return entries
    }

    func wiredNICs() -> [NetworkPlan.NIC] {
        Files.list(root + "/sys/class/net").filter(isWired).map {
            NetworkPlan.NIC(name: $0, mac: Files.readTrimmed(root + "/sys/class/net/\($0)/address") ?? "")
        }
    }

    func run(_ plan: NetworkPlan, what: String) {
        for note in plan.notes { log("network: \(note)") }
        for step in plan.steps {
            switch step {
            case .modprobe(let m, let args):
                if run("/sbin/modprobe", ["-q", m] + args) != 0 { log("network: cannot load \(m)") }
            case .ip(let args):
                let rc = run("/sbin/ip", args)
                if rc != 0 { log("network: ip \(args.joined(separator: " ")) failed (status \(rc))") }
            case .write(let path, let value):
                // a sysfs attribute: one write to the file itself, no rename
                do { try Files.writeInPlace(root + path, value) }
                catch let e as SystemError where e.operation.hasPrefix("open") { log("network: \(path): \(e.code)") }
                catch { log("network: \(path) <- \(value): \(error)") }
            case .dhcp(let iface):
                startDHCP(iface, anyKind: true)
            case .stopDHCP(let iface):
                stopDHCP(iface)
            case .resolvConf(let servers):
                try? Files.writeAtomically(root + "/run/cloudbios/dns-static", servers.joined(separator: " ") + "\n")
                try? Files.writeAtomically(root + "/etc/resolv.conf", servers.map { "nameserver \($0)\n" }.joined())
            }
        }
        for line in plan.summary { log("network: \(line) (\(what))") }
    }

    /// A NIC that appears later: the entry of `network.interfaces` that
    /// matches it, or DHCP when the config does not list interfaces.
    func configureNewInterface(_ iface: String) {
        let (entries, addressed) = state.read { ($0.interfaces, $0.addressed.contains(iface)) }
        guard let entries else { startDHCP(iface); return }
        guard isWired(iface), !addressed else { return }
        let nic = NetworkPlan.NIC(name: iface, mac: Files.readTrimmed(root + "/sys/class/net/\(iface)/address") ?? "")
        run(NetworkPlan.make(.list(entries.filter { $0.match != nil }), nics: [nic]), what: "hotplug")
    }

    /// Switches the local display to the VM the panel asked for: the
    /// viewer restarts on it (or the console export alone runs, for none).
    func applyDisplayRequest() {
        guard let text = Files.readTrimmed(root + PE.displayRequestFile) else { return }
        Files.remove(root + PE.displayRequestFile)
        let want: String? = text == "none" ? nil : text
        if let w = want, let problem = Names.checkVM(w) {
            log("display: \(problem); nothing changed")
            return
        }
        let now = state.snapshot
        guard want != now.displayVM, !now.cmdline.rescue else { return }
        for name in ["viewer", "console-vnc"] {
            for pid in supervisor.remove(name) { kill(pid, SIGTERM) }
        }
        let plan = state.update { s in
            s.displayVM = want
            return servicePlan(s)
        }
        for s in plan where s.name == "viewer" || s.name == "console-vnc" {
            log("services: \(s.name): cloudbios \(s.arguments.joined(separator: " "))")
            if onTarget { supervisor.add(Service(name: s.name, path: executable, arguments: s.arguments)) }
        }
        log("display: now \(want ?? "no VM") (asked for through the panel)")
        if onTarget { supervisor.tick() }
        refreshStatus(force: true)
    }

    /// Stops the DHCP client of `iface`, for good, and waits for it to end:
    /// it runs its script to the end first, so a lease it was applying is
    /// in place before the caller flushes it, never after.
    func stopDHCP(_ iface: String) {
        state.update { $0.addressed.insert(iface) }  // hotplug must not start DHCP again
        guard let pid = supervisor.disable("dhcp-\(iface)") else { return }
        kill(pid, SIGTERM)
        if Reaper.shared.wait(pid, timeout: 3) == nil { log("network: the DHCP client of \(iface) did not stop in 3 s") }
    }

    func startDHCP(_ iface: String, anyKind: Bool = false) {
        guard anyKind || isWired(iface) else { return }
        let (fresh, hostname) = state.update { ($0.addressed.insert(iface).inserted, $0.hostname) }
        guard fresh else { return }
        _ = run("/sbin/ip", ["link", "set", iface, "up"])
        log("network: DHCP on \(iface)")
        supervisor.add(Service(name: "dhcp-\(iface)", path: "/sbin/udhcpc",
                               arguments: ["-f", "-i", iface, "-s", "/usr/share/cloudbios/udhcpc.script",
                                           "-t", "5", "-T", "2", "-A", "5", "-x", "hostname:\(hostname)"]))
        supervisor.tick()
    }

    // MARK: volumes and config

    /// The volumes present; the payload's mount starts from them.
    func scanVolumes(_ cmdline: KernelCommandLine) -> [Volume] {
        if !onTarget {
            return Volume.parseBlkid((try? Files.readString(root + "/run/blkid")) ?? "")
        }
        // USB sticks and CD drives may need a moment after their driver loads.
        let wanted = cmdline.configSource.flatMap { s -> String? in
            if case .label(let l) = ConfigSource.parse(s) { return l } else { return nil }
        }
        let t0 = Clock.monotonic()
        let deadline = t0 + (wanted != nil ? 15 : 1.5)
        // USB disks appear after the other buses (the USB storage driver
        // waits for the device to settle): a CBCONFIG stick beside a CD is
        // waited for while its disk is still on the way, for a bounded time
        let usbDeadline = t0 + 12
        var usbWaitLogged = false
        var lastDevices: [String] = []
        var volumes: [Volume] = []
        while true {
            // devices still appearing (a SCSI CD-ROM behind its ATA driver)
            // get their drivers now, not after the boot
            handleUevents()
            let devices = Volume.blockDevices(sys: "/sys")
            volumes = volumeCache.probeAll(sys: "/sys", dev: "/dev")
            // a disk that just appeared may still be getting its partitions
            let settled = devices == lastDevices && devices == Volume.blockDevices(sys: "/sys")
            lastDevices = devices
            let labels = Set(volumes.compactMap(\.label))
            let found = wanted.map { labels.contains($0) }
                ?? labels.contains(PELabel.config)
            let enough = found || labels.contains(PELabel.bootMedium) || labels.contains(PELabel.system)
            let now = Clock.monotonic()
            if found { break }
            // a USB device still being enumerated shows nothing yet: the bus
            // is let settle until its uevents have been quiet for a moment
            let usbPending = Self.usbStoragePending(sys: "/sys") || now - lastUSBEvent < 1.5
            if usbPending && now < usbDeadline {
                if !usbWaitLogged { usbWaitLogged = true; log("volumes: waiting for USB storage still being enumerated") }
            } else if enough && (settled || !usbWaitLogged) {
                break
            } else if now >= (usbWaitLogged ? usbDeadline : deadline) {
                if usbPending { log("volumes: USB storage still without a disk after \(Int(usbDeadline - t0)) s; going on") }
                break
            }
            usleep(100_000)
        }
        for v in volumes { log("volume: \(v.device) \(v.type ?? "?") \(v.label.map { "LABEL=\($0)" } ?? "")") }
        startPayloadMount(volumes)
        return volumes
    }

    /// Whether a USB mass-storage interface has no disk yet (its driver
    /// still loading, or the device still settling).
    static func usbStoragePending(sys: String) -> Bool {
        for name in Files.list(sys + "/bus/usb/devices") where name.contains(":") {
            let dir = sys + "/bus/usb/devices/" + name
            guard Files.readTrimmed(dir + "/bInterfaceClass") == "08" else { continue }
            if !hasBlockDevice(dir, depth: 5) { return true }
        }
        return false
    }

    static func hasBlockDevice(_ dir: String, depth: Int) -> Bool {
        if Files.isDirectory(dir + "/block") { return true }
        guard depth > 0 else { return false }
        for e in Files.list(dir) where e.hasPrefix("host") || e.hasPrefix("target") || e.first?.isNumber == true {
            if e.contains(":") && !e.hasPrefix("target") && e.split(separator: ":").count != 4 { continue }
            if hasBlockDevice(dir + "/" + e, depth: depth - 1) { return true }
        }
        return false
    }

    func findConfig(_ cmdline: KernelCommandLine, volumes: [Volume]) -> ConfigOutcome {
        var phase = ConfigPhase(downloadPath: root + "/run/cloudbios/config/cloudbios.yaml",
                                mount: { [unowned self] in self.mountVolume($0) },
                                fetch: { [configFetch] url, dest in
                                    try? Files.makeDirectories(Files.parent(of: dest))
                                    return configFetch.fetch(url, to: dest)
                                },
                                metadata: { [unowned self] dest in
                                    try? Files.makeDirectories(Files.parent(of: dest))
                                    return self.metadataFetch.fetch(to: dest) { self.log($0) }
                                })
        phase.read = readConfig
        phase.log = { [unowned self] in self.log($0) }
        return phase.run(ConfigDiscovery.plan(cmdline, volumes: volumes), explicit: cmdline.configSource != nil, root: root)
    }

    /// The directory a volume is mounted on, read-only, below
    /// /run/cloudbios/media (off-target: the fake root's media/LABEL
    /// directory); mounted once by `mounts`, whoever asks first.
    func mountVolume(_ v: Volume) -> String? {
        if !onTarget {
            let d = root + "/media/" + (v.label ?? String(v.device.split(separator: "/").last ?? "vol"))
            return Files.isDirectory(d) ? d : nil
        }
        return mounts.mount(v) { self.log($0) }
    }

    func setHostname(_ config: ConfigOutcome) -> String {
        var hostname = "cloudbios"
        if let h = config.config?.hostname, !h.isEmpty { hostname = h }
        state.update { $0.hostname = hostname }
        guard onTarget else { return hostname }
        _ = cb_init_sethostname(hostname)
        try? Files.writeAtomically("/etc/hostname", hostname + "\n")
        log("hostname: \(hostname)")
        return hostname
    }

    /// The state directory on a `CB-DATA` partition (the installed
    /// system's, else the first one found: a data disk made for an ISO or
    /// USB boot), else on a tmpfs.
    func mountStorage(_ volumes: [Volume]) -> StateLocation {
        let candidates = volumes.filter { $0.label == PELabel.data }
        let data = candidates.first { StateStorage.besideInstalledSystem($0.device) } ?? candidates.first
        if let data {
            if candidates.count > 1 {
                log("storage: \(candidates.count) CB-DATA partitions (\(candidates.map(\.device).joined(separator: ", "))); using \(data.device)")
            }
            do {
                try mounts.mountReadWrite(data, on: stateDir)
                log("storage: \(data.device) mounted at \(stateDir)")
                return .dataPartition(data)
            } catch {
                log("storage: cannot mount the data partition \(data.device): \(error); using RAM")
            }
        }
        do {
            try Mount.mount("tmpfs", on: stateDir, type: "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), options: "mode=0755")
            log("storage: no data partition (CB-DATA); \(stateDir) is in RAM (tmpfs): VMs and images are gone at the next boot")
            return .ram
        } catch {
            log("storage: \(error)")
            return .failed("\(error)")
        }
    }

    /// A config with `install:` installs without a person at the console,
    /// then does `after:`. A refused or failed install is logged and the
    /// boot goes on to the panel, so the error can be read there too.
    func runInstall(_ cmdline: KernelCommandLine, config: ConfigOutcome) {
        guard !cmdline.rescue, case .valid(let at, let cfg) = config, let install = cfg.install else { return }
        let path = at.path
        console.screenLogging = true
        log("install: the config has an install: section; installing without a person at the console")
        let ok = Install.headless(config: cfg, configPath: path) { self.log($0) }
        guard ok else {
            log("install: NOT installed (see the messages above); the disk is left not-installed; starting the panel")
            return
        }
        switch install.after {
        case .poweroff: log("install: done; powering off"); shutdown(.poweroff)
        case .reboot: log("install: done; rebooting"); shutdown(.reboot)
        case .none: log("install: done; staying up (after: none)")
        }
    }

    // MARK: services

    /// The services PID 1 runs for this boot: (name, argv).
    public var servicePlan: [(name: String, arguments: [String])] { servicePlan(state.snapshot) }

    /// The services for what the phases produced and the display chosen.
    func servicePlan(_ s: PEState.Snapshot) -> [(name: String, arguments: [String])] {
        if s.cmdline.rescue { return [] }
        let usersFile = usersFile(s.config)
        var daemon = ["daemon"]
        if let p = s.config.validPath { daemon += ["--config", p] }
        // In the PE the daemon owns the host's VM networking: cbnat0 with
        // DHCP and masquerading for nat VMs, vmbr0 for bridge VMs.
        daemon += ["--state-dir", stateDir, "--nat", "bridge"]
        // the first-run admin: beside the config on a writable volume, else
        // in RAM (the setup may then save it to the boot stick)
        daemon += ["--users-file", usersFile, "--setup-code-file", root + PE.setupCodeFile]
        if let disk = bootMediumDisk(s.volumes) { daemon += ["--boot-medium", disk] }
        var out = [(name: "daemon", arguments: daemon)]
        let export = s.config.config?.console.vnc.map { ["--export-console", $0] } ?? []
        // the host console's menu on the local screen (tty1)
        var menu = ["host-console", "--users-file", usersFile, "--setup-code-file", root + PE.setupCodeFile]
        if let p = s.config.validPath { menu += ["--config", p] }
        out.append((name: "host-console", arguments: menu))
        if let vm = s.displayVM {
            out.append((name: "viewer", arguments: ["viewer", "--vm", vm] + export))
        } else if !export.isEmpty {
            out.append((name: "console-vnc", arguments: ["viewer"] + export))
        }
        return out
    }

    /// The status screen's text, for the host console's menu.
    public static let statusFile = "/run/cloudbios/status.txt"
    /// A network change asked for on the host console (`IFACE dhcp` or
    /// `IFACE CIDR [GATEWAY [DNS…]]`); PID 1 applies it on SIGHUP.
    public static let networkRequestFile = "/run/cloudbios/network-request"
    /// The VM the local display should show now (`NAME` or `none`), asked
    /// for through the panel; PID 1 applies it on SIGHUP.
    public static let displayRequestFile = "/run/cloudbios/display-request"

    /// Where the first-run setup code is written for the consoles.
    public static let setupCodeFile = "/run/cloudbios/setup-code"

    /// The machine's own panel users (`users.yaml`): beside the config when
    /// that is on a writable volume (an installed config partition, a
    /// CBCONFIG stick), else in RAM.
    public var usersFile: String { usersFile(configOutcome) }

    func usersFile(_ config: ConfigOutcome) -> String {
        if let at = config.location, let v = at.volume, v.type != "iso9660", v.label != PELabel.bootMedium {
            return Files.parent(of: at.path) + "/" + LocalUsers.fileName
        }
        return root + "/run/cloudbios/" + LocalUsers.fileName
    }

    /// The whole disk holding the boot medium (the CLOUDBIOS volume), when
    /// there is exactly one.
    func bootMediumDisk(_ volumes: [Volume]) -> String? {
        guard onTarget else { return nil }
        let disks = Set(volumes.filter { $0.label == PELabel.bootMedium }.map { Disks.wholeDiskDevice($0.device) })
        return disks.count == 1 ? disks.first : nil
    }

    /// The boot volume's UUID and label, and its disk's serial and size.
    func bootMediumIdentity(disk: String, volumes: [Volume], sys: String = "/sys") -> BootMediumIdentity? {
        guard let v = volumes.first(where: { $0.label == PELabel.bootMedium && Disks.wholeDiskDevice($0.device) == disk }) else { return nil }
        let name = String(disk.split(separator: "/").last ?? "")
        let serial = Files.readTrimmed("\(sys)/block/\(name)/serial") ?? Files.readTrimmed("\(sys)/block/\(name)/device/serial")
        let size = Files.readTrimmed("\(sys)/block/\(name)/size").flatMap { Int64($0) }.map { $0 * 512 }
        let id = BootMediumIdentity(label: v.label, uuid: v.uuid, serial: serial.flatMap { $0.isEmpty ? nil : $0 }, size: size)
        return id.isUsable ? id : nil
    }

    func planServices(_ cmdline: KernelCommandLine, volumes: [Volume], config: ConfigOutcome) {
        let displayVM: String?
        if let d = cmdline.display { displayVM = d == "none" ? nil : d }
        else { displayVM = config.config?.displayVM?.name }
        let plan = state.update { s in
            s.displayVM = displayVM
            return servicePlan(s)
        }
        if cmdline.rescue {
            log("rescue: shells on tty1 and the serial console; no services")
            if onTarget {
                supervisor.add(Service(name: "shell-tty1", path: "/sbin/getty", arguments: ["-n", "-l", "/bin/sh", "0", "tty1"]))
                supervisor.add(Service(name: "shell-ttyS0", path: "/sbin/getty", arguments: ["-n", "-l", "/bin/sh", "115200", "ttyS0"]))
            }
        }
        if let disk = bootMediumDisk(volumes) {
            // what the disk tools (installer, disks list) know as the boot medium
            try? Files.writeAtomically("/run/cloudbios/boot-device", disk + "\n")
            // and what it is, so a second path to it is recognised too
            if let id = bootMediumIdentity(disk: disk, volumes: volumes) { try? Files.writeAtomically("/run/cloudbios/boot-medium.id", id.encoded) }
        }
        for s in plan {
            log("services: \(s.name): cloudbios \(s.arguments.joined(separator: " "))")
            if onTarget { supervisor.add(Service(name: s.name, path: executable, arguments: s.arguments)) }
        }
        if displayVM == nil && !cmdline.rescue { log("services: no display VM; the viewer is not started") }
        if onTarget { supervisor.tick() }
        watchTrialBoot(cmdline, volumes: volumes)
    }

    /// Starts a service with its output on a pipe PID 1 forwards, line by
    /// line and prefixed with the service's name, to the log.
    func spawn(_ s: Service) throws -> pid_t {
        let output = try? FileDescriptor.pipe()
        output?.read.setNonBlocking()
        defer { output?.write.close() }
        var env = Launcher.defaultEnvironment + ["HOME=/root", "TERM=linux"]
        if s.name.hasPrefix("shell-") { env.append("PS1=cloudbios-rescue# ") }
        do {
            let pid = try Launcher(s.path, s.arguments, environment: env).spawn(stdout: output?.write, stderr: output?.write)
            if let r = output?.read { outputs[r.rawValue] = (s.name, []) }
            if let exits { Reaper.shared.onExit(pid) { exits.post(pid, $0) } }
            return pid
        } catch {
            output?.read.close()
            throw error
        }
    }

    // MARK: status

    /// The port the daemon's panel listens on: the config's when it is
    /// valid, else the default the daemon falls back to.
    static func panelPort(_ config: ConfigOutcome) -> Int { config.config?.panel.port ?? 8443 }

    public func statusInfo() -> StatusInfo {
        let s = state.snapshot
        let vms = VMRun.scan(stateDir: root + stateDir).map { (name: $0.name, state: $0.pid.map { processAlive($0) ? "running" : "stopped" } ?? "stopped") }
        var info = StatusInfo(version: version, hostname: s.hostname, addresses: onTarget ? Network.addresses() : [],
                          panelPort: Self.panelPort(s.config),
                          tlsFingerprint: Files.readTrimmed(root + stateDir + "/tls/fingerprint"),
                          configSource: s.config.location.map { "\($0.path) (\($0.source))" },
                          configError: s.config.error, vms: vms, display: s.displayVM,
                          payloadError: Files.readTrimmed(root + Payload.failedMarker),
                          setupCode: Files.readTrimmed(root + PE.setupCodeFile),
                          noDriver: onTarget ? Self.devicesWithoutDriver() : [])
        if onTarget {
            info.state = StateStorage.describe(stateDir).note
            info.system = systemSlotsLine(s.cmdline, volumes: s.volumes)
        }
        return info
    }

    /// "slot b running (VERSION); slot a: VERSION" on an installed system.
    func systemSlotsLine(_ cmdline: KernelCommandLine, volumes: [Volume]) -> String? {
        guard let root = systemPartitionRoot(volumes) else { return nil }
        let slots = SystemSlots(root: root)
        let running = SystemSlot.running(cmdline: cmdline.arguments.joined(separator: " "))
        var parts = ["slot \(running.rawValue) running (\(slots.version(running) ?? version))"]
        let other = running.other
        if let ov = slots.version(other) {
            let e = slots.env()
            parts.append("slot \(other.rawValue): \(ov)" + (e["cb_next"] == other.rawValue ? " (tried at the next boot)"
                : e["cb_failed"] == other.rawValue ? " (did not come up; not booted again)" : ""))
        }
        return parts.joined(separator: "; ")
    }

    func showStatus() {
        refreshStatus(force: true)
    }

    func refreshStatus(force: Bool = false) {
        let s = statusInfo()
        guard force || s != lastStatus else { return }
        let first = lastStatus == nil
        let old = lastStatus
        lastStatus = s
        guard onTarget else { return }
        if first || s.addresses.map(\.address) != old?.addresses.map(\.address) || s.tlsFingerprint != old?.tlsFingerprint {
            log("status: panel \(s.panelURLs.joined(separator: " ")) TLS SHA-256 \(s.tlsFingerprint ?? "(not yet)")")
        }
        if let code = s.setupCode, code != old?.setupCode {
            log("status: first run: no admin yet; open the panel and enter the setup code \(code)")
        }
        if s.noDriver != (old?.noDriver ?? []) {
            for d in s.noDriver { log("status: no driver for \(d)") }
        }
        console.screenLogging = false
        let text = StatusScreen.render(s)
        try? Files.writeAtomically(PE.statusFile, text)
        // the host console's menu draws it with its menu when it runs
        if supervisor.service("host-console")?.pid == nil { console.drawStatus(text) }
    }

    // MARK: the loop

    /// Runs PID 1: boot, then supervise, reap and wait for a shutdown
    /// request. Never returns.
    public func run() -> Never {
        signalFD = cb_init_signal_pipe()
        let exits = ChildExits()
        self.exits = exits
        Reaper.shared.adoptOrphans { exits.post($0, $1) }
        boot()
        log("boot: complete in \(Supervisor.format(Clock.boottime())) s since the kernel started")
        var lastRefresh = Clock.monotonic()
        let memoryReportAt = Clock.monotonic() + 30
        var memoryReported = false
        while true {
            if !memoryReported && Clock.monotonic() >= memoryReportAt { memoryReported = true; logMemory() }
            if let kind = shutdownRequested { shutdown(kind) }
            var fds: [pollfd] = []
            for fd in [signalFD, exits.readFD, ueventFD] + Array(outputs.keys) + Array(inputFDs.keys) where fd >= 0 {
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
            }
            let wait = min(supervisor.nextDeadline() ?? 2, 2)
            _ = poll(&fds, nfds_t(fds.count), Int32(wait * 1000) + 1)
            for p in fds where p.revents != 0 {
                if p.fd == signalFD { handleSignals() }
                else if p.fd == ueventFD { handleUevents() }
                else if outputs[p.fd] != nil { forwardOutput(p.fd) }
                else if inputFDs[p.fd] != nil { handleInput(p.fd) }
            }
            reap()
            supervisor.tick()
            if Clock.monotonic() - lastRefresh >= 2 { lastRefresh = Clock.monotonic(); refreshStatus() }
        }
    }

    /// Logs the resident memory of the PE's own processes (QEMU excluded).
    func logMemory() {
        var total = 0
        var parts: [String] = []
        for pid in Files.list("/proc") where Int(pid) != nil {
            guard let status = try? Files.readString("/proc/\(pid)/status") else { continue }
            var name = "", rss = 0
            for line in status.split(separator: "\n") {
                if line.hasPrefix("Name:") { name = line.dropFirst(5).split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
                if line.hasPrefix("VmRSS:") { rss = Int(line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0 }
            }
            guard rss > 0, !name.hasPrefix("qemu") else { continue }
            total += rss
            parts.append("\(name)[\(pid)] \(rss)")
        }
        let avail = ((try? Files.readString("/proc/meminfo")) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("MemAvailable:") }.map { $0.dropFirst(13).split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") } ?? "?"
        log("memory: PE processes RSS \(total) KiB (\(parts.joined(separator: ", ")) KiB); MemAvailable \(avail)")
    }

    func handleSignals() {
        while true {
            let s = cb_init_read_signal(signalFD)
            if s <= 0 { return }
            if s == SIGHUP { applyNetworkRequest(); applyDisplayRequest(); continue }
            if let kind = ShutdownKind(signal: s), shutdownRequested == nil {
                log("signal \(s): \(kind.rawValue) requested")
                shutdownRequested = kind
            }
        }
    }

    func handleInput(_ fd: Int32) {
        var type: UInt16 = 0, code: UInt16 = 0, value: Int32 = 0
        while true {
            let r = cb_init_read_input_event(fd, &type, &code, &value)
            if r == 0 { return }
            if r < 0 { log("power button: \(inputFDs[fd] ?? "?") gone"); close(fd); inputFDs[fd] = nil; return }
            if type == 1 && code == 116 && value == 1 && shutdownRequested == nil {
                log("power button pressed: powering off")
                shutdownRequested = .poweroff
            }
        }
    }

    /// Hands the exits the `Reaper` reported to the supervisor: services
    /// are restarted with backoff; orphans are none of its business.
    func reap() {
        for (pid, status) in exits?.take() ?? [] {
            supervisor.exited(pid: pid, status: status)
        }
    }

    func forwardOutput(_ fd: Int32) {
        guard let (name, before) = outputs[fd] else { return }
        var pending = before
        var buf = [UInt8](repeating: 0, count: 16384)
        var eof = false
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { eof = true }
            if n <= 0 { break }
            pending += buf[..<n]
        }
        while let nl = pending.firstIndex(of: 10) {
            console.forward("\(name): " + String(decoding: pending[..<nl], as: UTF8.self))
            pending.removeSubrange(...nl)
        }
        if eof || pending.count > 65536 {
            if !pending.isEmpty { console.forward("\(name): " + String(decoding: pending, as: UTF8.self)) }
            pending = []
        }
        if eof { close(fd); outputs[fd] = nil } else { outputs[fd] = (name, pending) }
        _ = name
    }

    func shutdown(_ kind: ShutdownKind) -> Never {
        supervisor.shuttingDown = true
        console.screenLogging = true
        let others = supervisor.services.map(\.name).filter { $0 != "daemon" && $0 != "viewer" }
        ShutdownSequence.run(kind, on: PEShutdown(pe: self), otherServices: others)
        while true { pause() }
    }

    // MARK: helpers

    @discardableResult
    func run(_ path: String, _ args: [String]) -> Int32 {
        guard onTarget else { return 0 }
        do {
            let r = try Launcher(path, args).run()
            if r.status != 0 && !r.output.isEmpty {
                for l in r.output.split(separator: "\n").prefix(5) { log("\(path.split(separator: "/").last ?? ""): \(l)") }
            }
            return r.status
        } catch {
            log("\(path): \(error)")
            return -1
        }
    }
}

/// Exits the `Reaper`'s thread reports to PID 1's main loop: queued, with
/// a byte on a pipe the loop polls to wake it.
final class ChildExits: Sendable {
    private let queue = Mutex<[(pid: pid_t, status: Int32)]>([])
    let readFD: Int32
    private let wake: (read: FileDescriptor, write: FileDescriptor)?

    init() {
        wake = try? FileDescriptor.pipe()
        wake?.read.setNonBlocking()
        wake?.write.setNonBlocking()
        readFD = wake?.read.rawValue ?? -1
    }

    func post(_ pid: pid_t, _ status: Int32) {
        queue.withLock { $0.append((pid, status)) }
        try? wake?.write.writeAll([1])
    }

    /// The exits reported since the last call, oldest first.
    func take() -> [(pid: pid_t, status: Int32)] {
        var buf = [UInt8](repeating: 0, count: 256)
        while let r = wake?.read, (try? buf.withUnsafeMutableBytes({ try r.read(into: $0) })) ?? 0 > 0 {}
        return queue.withLock { q in
            defer { q = [] }
            return q
        }
    }
}

public struct InitError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The PE's implementation of a shutdown.
final class PEShutdown: ShutdownMachine {
    let pe: PE
    init(pe: PE) { self.pe = pe }

    func log(_ line: String) { pe.log(line) }
    func now() -> Double { Clock.monotonic() }
    /// (The `Reaper`'s thread reaps whatever exits meanwhile.)
    func sleep(_ seconds: Double) {
        usleep(UInt32(seconds * 1e6))
    }

    func stopService(_ name: String, timeout: Double) {
        guard let pid = pe.supervisor.disable(name) else { return }
        Glibc.kill(pid, SIGTERM)
        if Reaper.shared.wait(pid, timeout: timeout) != nil { return }
        pe.log("shutdown: \(name) did not stop in \(Int(timeout)) s: SIGKILL")
        Glibc.kill(pid, SIGKILL)
        _ = Reaper.shared.wait(pid)
    }

    func runningVMs() -> [VMRun] { VMRun.scan(stateDir: pe.stateDir) }
    func qmp(_ vm: VMRun, _ command: String) -> Bool { QMPOneShot.execute(socket: vm.qmpSocket, command: command) }
    func alive(_ vm: VMRun) -> Bool { vm.pid.map { processAlive($0) } ?? false }
    func kill(_ vm: VMRun) { if let p = vm.pid { Glibc.kill(p, SIGKILL) } }
    func syncDisks() { sync() }

    func unmountAll() {
        let skip: Set<String> = ["proc", "sysfs", "devtmpfs", "devpts", "rootfs"]
        for e in Mount.table().reversed() where e.target != "/" && !skip.contains(e.type) {
            if (try? Mount.unmount(e.target)) == nil { try? Mount.unmount(e.target, lazy: true) }
        }
    }

    func reboot(_ kind: ShutdownKind) {
        let r = cb_init_reboot(kind == .reboot ? 0 : kind == .poweroff ? 1 : 2)
        pe.log("shutdown: reboot(2) failed: \(SystemError("reboot", errno: r == 0 ? 0 : currentErrno()))")
    }
}
