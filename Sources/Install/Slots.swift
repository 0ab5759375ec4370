import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The installed system's two slots (A/B) on its system partition, and
/// upgrades into the one not running. Slot a's files are at the partition's
/// root (where every install has put them), slot b's under `slot-b/`; each
/// holds `vmlinuz`, `initramfs.img`, `cloudbios.sqfs` and `version`. GRUB
/// (images/grub-disk.cfg.in) reads `boot/grub/grubenv`: `cb_good` is the slot
/// that last reached a healthy panel, `cb_next` the slot an upgrade asks to
/// try once (GRUB clears it as it boots it, so a slot that never comes up is
/// left at the next boot for `cb_good`'s), `cb_pending` the slot an upgrade
/// wrote, `cb_failed` one that did not come up.
public enum SystemSlot: String, Sendable, CaseIterable {
    case a, b

    /// Its directory under the system partition's root ("" for a).
    public var directory: String { self == .a ? "" : "slot-b/" }
    public var other: SystemSlot { self == .a ? .b : .a }

    /// The slot this boot came from: `cloudbios.slot=` (absent: a, as GRUB
    /// configs from before slots boot slot a's files).
    public static func running(cmdline: String) -> SystemSlot {
        for w in cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" }) where w.hasPrefix("cloudbios.slot=") {
            return SystemSlot(rawValue: String(w.dropFirst("cloudbios.slot=".count))) ?? .a
        }
        return .a
    }

    public static let files = ["vmlinuz", "initramfs.img", "cloudbios.sqfs"]
}

/// GRUB's environment block: exactly 1024 bytes, `name=value` lines after a
/// header, `#` padding (GRUB's `save_env` writes it in place).
public struct GrubEnv: Sendable, Equatable {
    public static let size = 1024
    public static let header = "# GRUB Environment Block\n"
    public var values: [(String, String)] = []

    public init() {}

    public init(parsing text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            self[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
    }

    public subscript(name: String) -> String? {
        get { values.first { $0.0 == name }?.1 }
        set {
            values.removeAll { $0.0 == name }
            if let v = newValue, !v.isEmpty { values.append((name, v)) }
        }
    }

    public func render() throws -> String {
        var s = Self.header
        for (k, v) in values { s += "\(k)=\(v)\n" }
        guard s.utf8.count <= Self.size else { throw InstallError.failed("the GRUB environment block would exceed \(Self.size) bytes") }
        return s + String(repeating: "#", count: Self.size - s.utf8.count)
    }

    public static func == (l: GrubEnv, r: GrubEnv) -> Bool { l.values.map { "\($0)=\($1)" } == r.values.map { "\($0)=\($1)" } }
}

/// What an upgrade image holds, found on a mounted CloudBIOS ISO.
public struct UpgradeSource: Sendable, Equatable {
    public var kernel: String
    public var initramfs: String
    public var payload: String
    public var version: String

    /// The marker every CloudBIOS boot medium carries at its root.
    public static let idFile = "cloudbios.id"
    public static let idText = "CloudBIOS boot medium"

    /// The files of the CloudBIOS ISO mounted at `root`; an image that is
    /// not one is refused with what it lacks.
    public static func inspect(_ root: String) throws -> UpgradeSource {
        guard Files.readTrimmed(root + "/" + idFile) == idText else {
            throw UpgradeError.notCloudBIOS("the image is not a CloudBIOS ISO (no /\(idFile) saying \"\(idText)\")")
        }
        let s = UpgradeSource(kernel: root + "/boot/vmlinuz", initramfs: root + "/boot/initramfs.img",
                              payload: root + "/boot/cloudbios.sqfs",
                              version: Files.readTrimmed(root + "/boot/version").map { Names.clip($0) } ?? "unknown")
        for f in [s.kernel, s.initramfs, s.payload] where (Files.size(f) ?? 0) == 0 {
            throw UpgradeError.notCloudBIOS("the image is not a complete CloudBIOS ISO: \(f.dropFirst(root.count)) is missing or empty")
        }
        return s
    }
}

/// The slots of a mounted installed system partition.
public struct SystemSlots: Sendable {
    /// Where the system partition is mounted (read-only is fine: it is made
    /// writable for each write).
    public let root: String
    public init(root: String) { self.root = root }

    public var envPath: String { root + "/boot/grub/grubenv" }
    public var grubConfig: String { root + "/boot/grub/grub.cfg" }

    public func env() -> GrubEnv { GrubEnv(parsing: (try? Files.readString(envPath)) ?? "") }

    public func has(_ slot: SystemSlot) -> Bool { Files.exists(root + "/" + slot.directory + "vmlinuz") }

    public func version(_ slot: SystemSlot) -> String? {
        has(slot) ? (Files.readTrimmed(root + "/" + slot.directory + "version") ?? "unknown") : nil
    }

    /// True when the partition's grub.cfg chooses between the slots (made
    /// from a template that knows them).
    public var menuKnowsSlots: Bool { ((try? Files.readString(grubConfig)) ?? "").contains("cb_next") }

    func writeEnv(_ e: GrubEnv) throws {
        let text = try e.render()
        try Mount.withWritable(envPath) {
            try Files.writeAtomically(envPath, text)
            Glibc.sync()
        }
    }

    /// Bytes the slot's files take now.
    func used(_ slot: SystemSlot) -> Int64 {
        (SystemSlot.files + ["version"]).reduce(0) { $0 + (Files.size(root + "/" + slot.directory + $1) ?? 0) }
    }

    /// Writes `source` into `slot` (never the running one), verifies every
    /// file against its source's SHA-256, then asks GRUB to try it once at
    /// the next boot. Nothing of the running slot, the config or the data
    /// is touched; a failure leaves the slot marked as not to be booted.
    public func install(_ source: UpgradeSource, into slot: SystemSlot, running: SystemSlot,
                        progress: (Int, String) -> Void) throws {
        guard slot != running else { throw InstallError.failed("slot \(slot.rawValue) is the running system") }
        guard menuKnowsSlots else {
            throw InstallError.failed("\(grubConfig) does not choose between system slots yet (it is written again when the daemon starts)")
        }
        let pairs = [(source.kernel, "vmlinuz"), (source.initramfs, "initramfs.img"), (source.payload, "cloudbios.sqfs")]
        let need = pairs.reduce(Int64(0)) { $0 + (Files.size($1.0) ?? 0) }
        var st = statvfs()
        guard statvfs(root, &st) == 0 else { throw SystemError("statvfs \(root)", errno: currentErrno()) }
        let free = Int64(st.f_bavail) * Int64(st.f_frsize) + used(slot)
        let margin: Int64 = 4 << 20
        guard free >= need + margin else {
            throw UpgradeError.noSpace("the system partition has \(Sizes.human(free)) for slot \(slot.rawValue); the new system needs \(Sizes.human(need + margin))")
        }
        var e = env()
        // the slot is not bootable while it is rewritten
        e["cb_next"] = nil
        if e["cb_good"] == slot.rawValue || e["cb_good"] == nil { e["cb_good"] = running.rawValue }
        e["cb_pending"] = nil
        e["cb_failed"] = nil
        try writeEnv(e)
        let dir = root + "/" + slot.directory
        try Mount.withWritable(root + "/boot") {
            try Files.makeDirectories(dir)
            Files.remove(dir + "version")
            var done: Int64 = 0
            for (src, name) in pairs {
                let tmp = dir + "." + name + ".new"
                try copy(src, to: tmp) { n in
                    progress(Int(90 * (done + n) / max(need, 1)), "writing \(name) into slot \(slot.rawValue)")
                }
                Glibc.sync()
                // verify: what is on the partition now, read back, against the source
                dropCaches(tmp)
                let want = try sha256File(src), got = try sha256File(tmp)
                guard got == want else {
                    Files.remove(tmp)
                    throw InstallError.failed("\(name) in slot \(slot.rawValue) does not read back as written (sha256 \(got), expected \(want))")
                }
                done += Files.size(src) ?? 0
            }
            for (_, name) in pairs { try syscall("rename \(name)") { rename(dir + "." + name + ".new", dir + name) } }
            try Files.writeAtomically(dir + "version", source.version + "\n")
            Glibc.sync()
        }
        progress(95, "slot \(slot.rawValue) verified; asking GRUB to try it at the next boot")
        e["cb_next"] = slot.rawValue
        e["cb_pending"] = slot.rawValue
        try writeEnv(e)
    }

    /// What this boot makes of an upgrade: the slot it asked for is running
    /// (so it is made the good one) or did not come up (GRUB booted the
    /// good slot again: reported, and not tried again). Call it once the
    /// panel is healthy.
    @discardableResult
    public func settle(running: SystemSlot) throws -> UpgradeOutcome? {
        var e = env()
        let before = e
        var outcome: UpgradeOutcome?
        // GRUB could not clear the trial (its save_env failed): this boot was it
        if e["cb_next"] == running.rawValue { e["cb_next"] = nil }
        if let p = e["cb_pending"].flatMap(SystemSlot.init(rawValue:)), e["cb_next"] == nil {
            if p == running {
                outcome = UpgradeOutcome(slot: p, state: "booted", message: "the upgrade to slot \(p.rawValue) (\(version(p) ?? "?")) booted and reached a healthy panel")
            } else {
                outcome = UpgradeOutcome(slot: p, state: "fell-back",
                                         message: "the upgrade in slot \(p.rawValue) (\(version(p) ?? "?")) did not reach a healthy panel; slot \(running.rawValue) (\(version(running) ?? "?")) booted again by itself")
                e["cb_failed"] = p.rawValue
            }
            e["cb_pending"] = nil
        }
        if e["cb_next"] == nil { e["cb_good"] = running.rawValue }
        if e["cb_failed"] == running.rawValue { e["cb_failed"] = nil }
        if e != before || !Files.exists(envPath) { try writeEnv(e) }
        return outcome
    }

    /// `GET /api/v1/host`'s `system`: each slot's version, the running and
    /// the good one, and the last upgrade's outcome.
    public func json(running: SystemSlot, runningVersion: String, outcome: UpgradeOutcome?) -> JSONValue {
        let e = env()
        var o: [String: JSONValue] = [
            "running": .string(running.rawValue),
            "slots": .array(SystemSlot.allCases.map { s in
                var v = version(s)
                if s == running, v == nil || v == "unknown" { v = runningVersion }
                return .object([
                    "name": .string(s.rawValue), "version": v.map(JSONValue.string) ?? .null, "installed": .bool(has(s)),
                    "running": .bool(s == running), "good": .bool((e["cb_good"] ?? "a") == s.rawValue),
                    "next": .bool(e["cb_next"] == s.rawValue), "failed": .bool(e["cb_failed"] == s.rawValue),
                ])
            }),
        ]
        if let outcome { o["upgrade"] = outcome.json }
        else if let f = e["cb_failed"].flatMap(SystemSlot.init(rawValue:)) {
            o["upgrade"] = UpgradeOutcome(slot: f, state: "fell-back", message: "the upgrade in slot \(f.rawValue) did not reach a healthy panel").json
        } else if let n = e["cb_next"].flatMap(SystemSlot.init(rawValue:)) {
            o["upgrade"] = UpgradeOutcome(slot: n, state: "pending", message: "slot \(n.rawValue) (\(version(n) ?? "?")) is tried at the next boot").json
        }
        return .object(o)
    }

    func copy(_ src: String, to dst: String, progress: (Int64) -> Void) throws {
        let inFD = try syscall("open \(src)") { open(src, O_RDONLY | O_CLOEXEC) }
        defer { close(inFD) }
        let outFD = try syscall("create \(dst)") { open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(outFD) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        while true {
            let n = buf.withUnsafeMutableBytes { read(inFD, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw SystemError("read \(src)", errno: currentErrno()) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(outFD, $0.baseAddress! + off, n - off) }
                if w < 0 { if errno == EINTR { continue }; throw SystemError("write \(dst)", errno: currentErrno()) }
                off += w
            }
            total += Int64(n)
            progress(total)
        }
        try syscall("fsync \(dst)") { fsync(outFD) }
    }

    func dropCaches(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        close(fd)
    }
}

/// The last upgrade as this boot sees it.
public struct UpgradeOutcome: Sendable, Equatable {
    public var slot: SystemSlot
    /// booted, fell-back or pending.
    public var state: String
    public var message: String
    public var json: JSONValue { .object(["slot": .string(slot.rawValue), "state": .string(state), "message": .string(message)]) }
}

/// Why an upgrade is refused or failed before anything was changed.
public enum UpgradeError: DomainError, Sendable, Equatable {
    /// The image is not a CloudBIOS ISO.
    case notCloudBIOS(String)
    /// The system partition has no room for the other slot.
    case noSpace(String)
    /// This machine is no installed CloudBIOS system.
    case notInstalled(String)

    public var kind: ErrorKind {
        switch self {
        case .notCloudBIOS: .invalid
        case .noSpace, .notInstalled: .conflict
        }
    }

    public var description: String {
        switch self {
        case .notCloudBIOS(let m), .noSpace(let m), .notInstalled(let m): m
        }
    }
}
