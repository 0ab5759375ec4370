import Config
import Disks
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A data disk: a whole disk made into one GPT partition holding an ext4
/// filesystem labelled `CB-DATA`, the data filesystem an installed disk has.
/// PID 1 mounts the one it finds at boot as the state directory (image
/// store, VM disks, backups), so an ISO or USB boot keeps what it made.
/// Planned with the installer's safety rules (never the boot medium, never
/// a disk in use, a disk holding anything only with `wipe`) and written
/// through its target and libparted paths.
public enum DataDisk {
    /// The smallest disk made into a data disk.
    public static let minimumSize: Int64 = Layout.minimumDataSize + 2 * Layout.mib

    /// What `make` writes, after every check passed.
    public struct Plan: Sendable, Equatable {
        public let target: PlannedTarget
        public var disk: DiskInfo
        public var partition: PlannedPartition
        /// What the init destroys (empty for a blank disk).
        public var destroys: [String]
        public var wipe: Bool

        public var json: JSONValue {
            .object([
                "target": .string(target.path), "disk": disk.json, "wipe": .bool(wipe),
                "destroys": .array(destroys.map(JSONValue.string)),
                "partition": partition.json,
            ])
        }
    }

    /// The one partition of a data disk of `size` bytes (1 MiB aligned, the
    /// last MiB left for the backup GPT); nil when too small.
    public static func partition(diskSize size: Int64) -> PlannedPartition? {
        guard size >= minimumSize else { return nil }
        let mib = Layout.mib
        let end = (size - mib) / mib * mib
        return PlannedPartition(number: 1, role: .data, name: "cloudbios-data", start: mib, size: end - mib,
                                filesystem: "ext4", label: Layout.dataLabel)
    }

    /// Checks `disk` as the installer checks its target. `unknownData`: the
    /// disk's first MiB is not blank although no table or filesystem was
    /// recognised on it (data of some kind is there).
    public static func plan(_ disk: DiskInfo, disks: [DiskInfo], wipe: Bool, unknownData: Bool = false) throws(DataDiskError) -> Plan {
        if let bm = disks.first(where: { $0.isBootMedium && Planner.sameDisk($0, disk) }) { throw .plan(.bootMedium(bm.label)) }
        if disk.isBootMedium { throw .plan(.bootMedium(disk.label)) }
        if disk.readOnly { throw .plan(.readOnly(disk.label)) }
        let mounted = disk.allMountpoints
        if !mounted.isEmpty { throw .plan(.inUse(disk: disk.label, mountpoints: mounted)) }
        guard let part = partition(diskSize: disk.size) else { throw .tooSmall(disk: disk.label, size: disk.size) }
        var contents = disk.contentsSummary
        if unknownData && !disk.holdsData { contents.append("data in its first MiB that is no partition table or filesystem CloudBIOS knows") }
        if !contents.isEmpty && !wipe { throw .notEmpty(disk: disk.label, contents: contents) }
        return Plan(target: PlannedTarget(disk), disk: disk, partition: part, destroys: contents, wipe: wipe)
    }

    /// Whether the first MiB of `path` holds anything but zeros (nil when
    /// it cannot be read).
    public static func firstMiBHoldsData(_ path: String) -> Bool? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        defer { fd.close() }
        var buf = [UInt8](repeating: 0, count: Int(Layout.mib))
        var done = 0
        while done < buf.count {
            guard let n = try? buf.withUnsafeMutableBytes({ p in
                try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: p[done...]))
            }), n > 0 else { break }
            done += n
        }
        return buf[..<done].contains { $0 != 0 }
    }

    /// Writes the plan: erase what was there (the first and last MiB and
    /// the start of every old partition), a GPT with the one partition,
    /// the ext4 filesystem in place, then has the kernel re-read the table.
    /// Returns the partition's device node (a block device's), or the
    /// image file for a file. Blocking: call it off the cooperative pool.
    @discardableResult
    public static func make(_ plan: Plan, progress: (Int, String) -> Void = { _, _ in }) throws -> String {
        let t = plan.target
        progress(2, "confirming \(t.path) is still the planned disk and nothing on it is in use")
        if !t.isImageFile {
            let fd = open(t.path, O_RDONLY | O_EXCL | O_CLOEXEC)
            if fd < 0 { throw InstallError.failed("\(t.path) is busy (mounted or in use): \(SystemError("open", errno: currentErrno()))") }
            close(fd)
        }
        let target = try TargetDevice(t)
        progress(10, "erasing partition tables and filesystem signatures")
        let mib = Layout.mib
        var ranges: [(Int64, Int64)] = [(0, mib), (t.size - mib, mib), (plan.partition.start, mib)]
        for p in plan.disk.partitions { ranges.append((p.start, min(mib, p.size))) }
        for (o, l) in ranges where o >= 0 && l > 0 && o + l <= t.size { try target.zero(o, l) }
        try target.sync()
        progress(20, "writing a GPT with one partition, \(Sizes.human(plan.partition.size))")
        try GPTWriter.write([plan.partition], to: t)
        progress(40, "making the \(Layout.dataLabel) ext4 filesystem")
        try Tool.run("mke2fs", ["-t", "ext4", "-F", "-q", "-b", "4096", "-L", Layout.dataLabel, "-U", InstallExecutor.newUUID(),
                                "-E", "offset=\(plan.partition.start),nodiscard", t.path, "\(plan.partition.size / 1024)k"])
        progress(90, "having the kernel re-read the partition table")
        try target.rereadPartitions()
        guard !t.isImageFile else { return t.path }
        // the partition's node appears once the kernel has read the table
        for _ in 0..<50 {
            if let p = (try? Disks.inspect(path: t.path))?.partitions.first(where: { $0.number == 1 })?.path, Files.exists(p) { return p }
            usleep(100_000)
        }
        throw InstallError.failed("\(t.path): the kernel shows no partition 1 after the table was written")
    }
}

/// Why a disk is not made into a data disk.
public enum DataDiskError: DomainError, Sendable, Equatable {
    /// The installer's refusals: the boot medium, read-only, in use.
    case plan(PlanError)
    case tooSmall(disk: String, size: Int64)
    case notEmpty(disk: String, contents: [String])
    case noSuchDisk(String)

    public var kind: ErrorKind {
        switch self {
        case .plan(let e): e.kind
        case .tooSmall: .invalid
        case .notEmpty: .conflict
        case .noSuchDisk: .notFound
        }
    }

    public var description: String {
        switch self {
        case .plan(let e): e.description
        case .tooSmall(let d, let size):
            "\(d) is too small (\(Sizes.human(size))) for a data disk; it needs at least \(Sizes.human(DataDisk.minimumSize))"
        case .notEmpty(let d, let c):
            "\(d) is not empty; refusing to destroy it without wipe. It holds:\n" + c.map { "  \($0)" }.joined(separator: "\n")
        case .noSuchDisk(let n): "no disk '\(n)'"
        }
    }
}
