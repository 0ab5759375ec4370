import Config
import Disks
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Where the installed system's files come from.
public struct InstallSources: Sendable, Equatable {
    public var kernel: String
    public var initramfs: String
    /// The PE's payload (`cloudbios.sqfs`) when the initramfs is a core that
    /// needs it; by default the file of that name beside the initramfs.
    public var payload: String?
    /// Holds `i386-pc/` and `x86_64-efi/` (boot.img, modules).
    public var grubDir: String = "/usr/lib/grub"
    /// `images/grub-disk.cfg.in`; nil = the first of `GrubMenu.templatePaths`, else built in.
    public var grubTemplate: String?
    /// Debian's signed shim and GRUB for the ESP's default boot path (Secure
    /// Boot); when absent or nil the ESP boots GRUB made here, unsigned.
    public var signedBoot: SignedBootChain? = .debian
    /// Scratch space for the filesystem images (sparse; ~100 MB used).
    public var stagingDir: String = "/tmp"
    /// The running image store, copied to the data partition's `images/`.
    public var imageStore: String? = "/var/lib/cloudbios/images"
    /// Images named in the config (`images:` with `file:`), copied to the
    /// store on the data partition unless the store already has them.
    public var configImages: [ConfigImage] = []

    public struct ConfigImage: Sendable, Equatable {
        public var name: String
        public var path: String
        public init(name: String, path: String) { self.name = name; self.path = path }
    }

    public init(kernel: String, initramfs: String, payload: String? = nil) {
        self.kernel = kernel; self.initramfs = initramfs
        self.payload = payload ?? Self.payloadBeside(initramfs)
    }

    /// `cloudbios.sqfs` in the initramfs's directory, if it is there.
    public static func payloadBeside(_ initramfs: String) -> String? {
        let p = Files.parent(of: initramfs) + "/cloudbios.sqfs"
        return Files.exists(p) ? p : nil
    }

    /// Where the PE's own kernel and initramfs are: the mounted boot medium,
    /// else a repository build (`images/out`).
    public static let kernelCandidates = [
        ("/run/cloudbios/boot-medium/boot/vmlinuz", "/run/cloudbios/boot-medium/boot/initramfs.img"),
        ("/run/cloudbios/media/CLOUDBIOS/boot/vmlinuz", "/run/cloudbios/media/CLOUDBIOS/boot/initramfs.img"),
        ("/run/cloudbios/boot-medium/vmlinuz", "/run/cloudbios/boot-medium/initramfs.img"),
        ("images/out/vmlinuz", "images/out/initramfs.img"),
    ]

    public static func locate(kernel: String? = nil, initramfs: String? = nil) throws(InstallError) -> InstallSources {
        if let k = kernel, let i = initramfs { return InstallSources(kernel: k, initramfs: i) }
        for (k, i) in kernelCandidates where Files.exists(kernel ?? k) && Files.exists(initramfs ?? i) {
            return InstallSources(kernel: kernel ?? k, initramfs: initramfs ?? i)
        }
        // In the PE the boot medium may not be mounted (the config came from
        // elsewhere): mount it read-only where the candidates look first.
        if kernel == nil || initramfs == nil, BootMedium.mount() {
            let (k, i) = kernelCandidates[0]
            if Files.exists(kernel ?? k) && Files.exists(initramfs ?? i) {
                return InstallSources(kernel: kernel ?? k, initramfs: initramfs ?? i)
            }
        }
        throw .missingSource("cannot find the CloudBIOS kernel and initramfs (looked in /run/cloudbios/boot-medium/boot and images/out); pass --kernel and --initramfs")
    }

    /// The `images:` entries with local files, resolved against the config's directory.
    public static func configImages(_ config: CloudBIOSConfig) -> [ConfigImage] {
        config.images.compactMap { img in
            guard let f = img.file else { return nil }
            let p = f.hasPrefix("/") ? f : config.baseDirectory + "/" + f
            return ConfigImage(name: img.name, path: p)
        }
    }
}

/// The medium the PE booted from, mounted read-only on demand.
public enum BootMedium {
    public static let mountPoint = "/run/cloudbios/boot-medium"

    /// Mounts the boot medium's filesystem at `mountPoint` unless something
    /// is mounted there already. True when mounted.
    @discardableResult
    public static func mount() -> Bool {
        if Files.exists(mountPoint + "/boot") { return true }
        for d in Disks.list() where d.isBootMedium {
            var sources: [(String, String)] = []
            if let fs = d.filesystem { sources.append((d.path, fs.type)) }
            for p in d.partitions { if let fs = p.filesystem, fs.label == Disks.bootVolumeLabel, let path = p.path { sources.append((path, fs.type)) } }
            for (dev, type) in sources {
                try? Files.makeDirectories(mountPoint)
                if Glibc.mount(dev, mountPoint, type, UInt(MS_RDONLY | MS_NOSUID | MS_NODEV), nil) == 0 {
                    Log.info("install: boot medium \(dev) mounted at \(mountPoint)")
                    return true
                }
            }
        }
        return false
    }
}

/// What one install writes besides the plan.
public struct InstallRequest: Sendable {
    public var plan: InstallPlan
    /// The config file's text without `install:` (config partition).
    public var configText: String
    /// VM names (one GRUB entry each) and the one shown locally by default.
    public var vms: [String]
    public var displayVM: String?
    public var sources: InstallSources
    /// The panel users made on the machine installing (first-run setup,
    /// host console), as `users.yaml` text for the config partition: the
    /// installed system logs in with them and asks for no first admin.
    public var localUsers: String?
    public init(plan: InstallPlan, configText: String, vms: [String], displayVM: String?, sources: InstallSources,
                localUsers: String? = nil) {
        self.plan = plan; self.configText = configText; self.vms = vms; self.displayVM = displayVM; self.sources = sources
        self.localUsers = localUsers
    }
}

public enum InstallEvent: Sendable {
    case started(InstallPlan)
    case phase(InstallPhase, percent: Int)
    case progress(percent: Int, message: String)
    case succeeded(String)
    case failed(String)
}

/// Runs the phases of `InstallPhase.sequence` against the planned target.
/// Synchronous (runs tools and blocking I/O): call it off the main actor.
public final class InstallExecutor {
    public let request: InstallRequest
    let observe: (InstallEvent) -> Void
    let systemUUID = InstallExecutor.newUUID()
    let configUUID = InstallExecutor.newUUID()
    let dataUUID = InstallExecutor.newUUID()
    var stage = ""
    var done = 0          // percent completed by finished phases
    var lastReported = -1

    public init(_ request: InstallRequest, observe: @escaping (InstallEvent) -> Void = { _ in }) {
        self.request = request
        self.observe = observe
    }

    var plan: InstallPlan { request.plan }
    func part(_ role: PlannedPartition.Role) -> PlannedPartition { plan.partitions.first { $0.role == role }! }

    /// Runs every phase. Throws the first failure (the disk is then left
    /// not-installed: the system superblock, the commit record, is written last).
    public func run() throws {
        observe(.started(plan))
        stage = request.sources.stagingDir + "/cloudbios-install-\(getpid())-\(Int(time(nil)))"
        try Files.makeDirectories(stage)
        defer { Files.removeTree(stage) }
        var target: TargetDevice?
        do {
            for phase in plan.phases {
                observe(.phase(phase, percent: done))
                switch phase.id {
                case .check: target = try check()
                case .wipe: try wipe(target!)
                case .partition: try GPTWriter.write(plan.partitions, to: plan.target)
                case .stage: try stageFilesystems(phase)
                case .filesystems: try writeFilesystems(target!, phase)
                case .data: try makeData(phase)
                case .bootloader: try installBIOSBoot(target!)
                case .commit: try commit(target!, phase)
                case .sync: try target!.rereadPartitions()
                }
                done += phase.weight
                report(done, "\(phase.id.rawValue) done")
            }
        } catch {
            observe(.failed("\(error)"))
            throw error
        }
        observe(.succeeded("CloudBIOS installed on \(plan.disk.label)"))
    }

    func report(_ percent: Int, _ message: String) {
        let p = min(100, max(0, percent))
        guard p != lastReported else { return }
        lastReported = p
        observe(.progress(percent: p, message: message))
    }

    func subProgress(_ phase: InstallPhase, _ doneBytes: Int64, _ total: Int64, _ what: String) {
        guard total > 0 else { return }
        report(done + Int(Int64(phase.weight) * doneBytes / total), what)
    }

    // MARK: phases

    func check() throws -> TargetDevice {
        if !plan.target.isImageFile {
            // Exclusive open fails while anything mounts or claims the disk.
            let fd = open(plan.target.path, O_RDONLY | O_EXCL | O_CLOEXEC)
            if fd < 0 { throw InstallError.failed("\(plan.target.path) is busy (mounted or in use): \(SystemError("open", errno: currentErrno()))") }
            close(fd)
            let now = try Disks.inspect(path: plan.target.path)
            if now.serial != plan.target.serial { throw InstallError.targetChanged("serial is \(now.serial ?? "none") now") }
        }
        return try TargetDevice(plan.target)
    }

    /// Zeroes the first and last MiB (MBR, both GPTs, most signatures) and
    /// the first MiB of every old and new partition (old superblocks, and so
    /// any earlier install's commit record).
    func wipe(_ t: TargetDevice) throws {
        let mib = Layout.mib
        let size = plan.target.size
        var ranges: [(Int64, Int64)] = [(0, mib), (size - mib, mib)]
        for p in plan.disk.partitions { ranges.append((p.start, min(mib, p.size))) }
        for p in plan.partitions { ranges.append((p.start, min(mib, p.size))) }
        for (o, l) in ranges where o >= 0 && l > 0 && o + l <= size {
            try t.zero(o, l)
        }
        try t.sync()
    }

    var espImage: String { stage + "/esp.img" }
    var systemImage: String { stage + "/system.img" }
    var configImage: String { stage + "/config.img" }
    var coreImage: String { stage + "/core.img" }

    func stageFilesystems(_ phase: InstallPhase) throws {
        let src = request.sources
        for f in [src.kernel, src.initramfs] where !Files.exists(f) {
            throw InstallError.missingSource("\(f) does not exist")
        }
        for (d, mods) in [("i386-pc", ["boot.img", "biosdisk.mod", "part_gpt.mod", "ext2.mod", "search_fs_uuid.mod", "normal.mod", "linux.mod", "configfile.mod"]),
                          ("x86_64-efi", ["part_gpt.mod", "ext2.mod", "search_fs_uuid.mod", "normal.mod", "linux.mod", "configfile.mod"])] {
            for m in mods where !Files.exists("\(src.grubDir)/\(d)/\(m)") {
                throw InstallError.missingSource("GRUB is incomplete: \(src.grubDir)/\(d)/\(m) is missing")
            }
        }
        // GRUB images.
        let grub = try GrubImages.build(grubDir: src.grubDir, systemUUID: systemUUID, into: stage)
        guard let coreSize = Files.size(grub.core), coreSize <= min(part(.biosBoot).size, 448 << 10) else {
            throw InstallError.bootloader("core.img does not fit the BIOS boot partition")
        }
        subProgress(phase, 1, 10, "GRUB images built")
        // ESP: FAT32 with the removable-media path and our own.
        try makeSparse(espImage, part(.esp).size)
        try Tool.run("mkfs.fat", ["-F", "32", "-n", Layout.espLabel, "-i", String(systemUUID.prefix(8)), espImage])
        try Tool.run("mmd", ["-i", espImage, "::/EFI", "::/EFI/BOOT", "::/EFI/cloudbios"])
        if let chain = src.signedBoot, chain.isPresent {
            let early = stage + "/signed-early.cfg"
            try Files.writeAtomically(early, GrubMenu.signedEarly(systemUUID: systemUUID))
            try Tool.run("mmd", ["-i", espImage, "::/EFI/debian"])
            for f in chain.espFiles(early: early) { try Tool.run("mcopy", ["-i", espImage, f.source, f.target]) }
        } else {
            try Tool.run("mcopy", ["-i", espImage, grub.efi, "::/EFI/BOOT/BOOTX64.EFI"])
        }
        try Tool.run("mcopy", ["-i", espImage, grub.efi, "::/EFI/cloudbios/grubx64.efi"])
        subProgress(phase, 2, 10, "ESP built")
        // System: kernel, initramfs, GRUB config and modules, the marker.
        let sys = stage + "/system"
        try Files.makeDirectories(sys + "/boot/grub")
        try copyFile(src.kernel, sys + "/vmlinuz")
        try copyFile(src.initramfs, sys + "/initramfs.img")
        if let p = src.payload { try copyFile(p, sys + "/cloudbios.sqfs") }
        for arch in ["i386-pc", "x86_64-efi"] {
            try Files.makeDirectories(sys + "/boot/grub/\(arch)")
            for f in Files.list(src.grubDir + "/" + arch) where f.hasSuffix(".mod") || f.hasSuffix(".lst") {
                try copyFile(src.grubDir + "/\(arch)/\(f)", sys + "/boot/grub/\(arch)/\(f)")
            }
        }
        let template = (src.grubTemplate.map { [$0] } ?? GrubMenu.templatePaths).lazy.compactMap { try? Files.readString($0) }.first
            ?? GrubMenu.builtinTemplate
        try Files.writeAtomically(sys + "/boot/grub/grub.cfg",
                                  GrubMenu.render(template: template, systemUUID: systemUUID, vms: request.vms, display: request.displayVM))
        try Files.writeAtomically(sys + "/cloudbios-installed", markerJSON.serialized(pretty: true) + "\n")
        // slot a, the one installed: GRUB's environment names it good, and
        // its version is the boot medium's (beside the kernel) when it says
        var env = GrubEnv()
        env["cb_good"] = SystemSlot.a.rawValue
        try Files.writeAtomically(sys + "/boot/grub/grubenv", try env.render())
        if let v = Files.readTrimmed(Files.parent(of: src.kernel) + "/version") {
            try Files.writeAtomically(sys + "/version", v + "\n")
        }
        subProgress(phase, 6, 10, "system files staged")
        try makeSparse(systemImage, part(.system).size)
        try Tool.run("mke2fs", ["-t", "ext4", "-F", "-q", "-b", "4096", "-L", Layout.systemLabel, "-U", systemUUID,
                                "-E", "nodiscard", "-d", sys, systemImage])
        // Config: the config file without install:, and the machine's own users.
        let cfg = stage + "/config"
        try Files.makeDirectories(cfg)
        try Files.writeAtomically(cfg + "/cloudbios.yaml", request.configText)
        if let users = request.localUsers {
            try Files.writeAtomically(cfg + "/" + LocalUsers.fileName, users, mode: 0o600)
        }
        try makeSparse(configImage, part(.config).size)
        try Tool.run("mke2fs", ["-t", "ext4", "-F", "-q", "-b", "4096", "-L", Layout.configLabel, "-U", configUUID,
                                "-E", "nodiscard", "-d", cfg, configImage])
        subProgress(phase, 10, 10, "filesystems staged")
    }

    var markerJSON: JSONValue {
        .object([
            "installed": .bool(true),
            "time": .int(Int(time(nil))),
            "disk": .string(plan.disk.path),
            "serial": plan.disk.serial.map(JSONValue.string) ?? .null,
            "system_uuid": .string(systemUUID),
            "config_uuid": .string(configUUID),
            "data_uuid": .string(dataUUID),
            "vms": .array(request.vms.map(JSONValue.string)),
        ])
    }

    func writeFilesystems(_ t: TargetDevice, _ phase: InstallPhase) throws {
        let esp = part(.esp), cfg = part(.config)
        let total = esp.size + cfg.size
        try ImageWriter.write(espImage, to: t, at: esp.start) { d, _ in self.subProgress(phase, d, total, "ESP") }
        try ImageWriter.write(configImage, to: t, at: cfg.start) { d, _ in self.subProgress(phase, esp.size + d, total, "config") }
    }

    /// The data filesystem is made in place (it may be terabytes) and the
    /// image store written into it with debugfs (sparse files stay sparse).
    func makeData(_ phase: InstallPhase) throws {
        let data = part(.data)
        let dev = plan.target.path
        try Tool.run("mke2fs", ["-t", "ext4", "-F", "-q", "-b", "4096", "-L", Layout.dataLabel, "-U", dataUUID,
                                "-E", "offset=\(data.start),nodiscard", dev, "\(data.size / 1024)k"])
        subProgress(phase, 1, 4, "data filesystem made")
        var cmds = ["mkdir images"]
        var names = Set<String>()
        if let store = request.sources.imageStore, Files.isDirectory(store) {
            func walk(_ dir: String, _ rel: String) {
                for e in Files.list(dir) where !e.hasPrefix(".") {
                    let full = dir + "/" + e, r = rel + "/" + e
                    if Files.isDirectory(full) { cmds.append("mkdir \(quote(r))"); walk(full, r) }
                    else if isRegular(full) { cmds.append("write \(quote(full)) \(quote(r))"); if rel == "images" { names.insert(e) } }
                }
            }
            walk(store, "images")
        }
        for img in request.sources.configImages where !names.contains(img.name) {
            guard isRegular(img.path) else { throw InstallError.missingSource("image \(img.name): \(img.path) does not exist") }
            cmds.append("write \(quote(img.path)) \(quote("images/" + img.name))")
            names.insert(img.name)
        }
        let cmdFile = stage + "/data.debugfs"
        try Files.writeAtomically(cmdFile, cmds.joined(separator: "\n") + "\n")
        let out = try Tool.run("debugfs", ["-w", "-f", cmdFile, "\(dev)?offset=\(data.start)"])
        // debugfs reports errors in its output, not its exit status.
        if let bad = out.split(separator: "\n").first(where: { $0.contains("File not found") || $0.contains("Could not") || $0.contains("error") || $0.contains("No free space") }) {
            throw InstallError.tool("debugfs (image store)", 1, String(bad))
        }
        subProgress(phase, 4, 4, "image store copied (\(names.count) image\(names.count == 1 ? "" : "s"))")
    }

    func installBIOSBoot(_ t: TargetDevice) throws {
        let bios = part(.biosBoot)
        let sector = UInt64(bios.start / 512)
        let core = try BIOSBoot.patchCore(try Files.read(coreImage), coreSector: sector)
        try t.write(core, at: bios.start)
        let boot = try Files.read(request.sources.grubDir + "/i386-pc/boot.img")
        let mbr = try BIOSBoot.mbr(bootImage: boot, existing: try t.read(512, at: 0), coreSector: sector)
        try t.write(mbr, at: 0)
        try t.sync()
    }

    /// The system filesystem goes last, its first 64 KiB (superblock and
    /// group descriptors) after everything else is on disk: until then no
    /// bootloader can find it, so an interrupted install never half-boots.
    func commit(_ t: TargetDevice, _ phase: InstallPhase) throws {
        let sys = part(.system)
        try ImageWriter.write(systemImage, to: t, at: sys.start, deferHead: 64 << 10) { d, total in
            self.subProgress(phase, d, total, "system")
        }
    }

    // MARK: helpers

    func makeSparse(_ path: String, _ size: Int64) throws {
        Files.remove(path)
        let fd = try syscall("create \(path)") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(fd) }
        try syscall("truncate \(path)") { ftruncate(fd, off_t(size)) }
    }

    func copyFile(_ from: String, _ to: String) throws { try Files.copy(from, to: to) }

    func isRegular(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    func quote(_ s: String) -> String { "\"" + s + "\"" }

    static func newUUID() -> String {
        if let u = Files.readTrimmed("/proc/sys/kernel/random/uuid"), u.count == 36 { return u }
        var b = [UInt8](repeating: 0, count: 16)
        for i in b.indices { b[i] = UInt8.random(in: 0...255) }
        b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80
        let h = b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        let a = Array(h)
        return String(a[0..<8]) + "-" + String(a[8..<12]) + "-" + String(a[12..<16]) + "-" + String(a[16..<20]) + "-" + String(a[20..<32])
    }
}
