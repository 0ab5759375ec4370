import Config
import Disks

/// The one disk an install may write to. Only the planners (`Planner.plan`,
/// `DataDisk.plan`) make these, after every safety check passed; everything
/// that opens a disk for writing takes one, so no other path can reach a
/// writer.
public struct PlannedTarget: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    /// Size when planned; the executor refuses a disk whose size changed.
    public let size: Int64
    public let serial: String?
    public let isImageFile: Bool
    /// Identity when planned, checked again through the opened descriptor
    /// before the first write: the device number (`MAJ:MIN`), model and
    /// loop backing file of a block device; `DEV:INODE` of an image file.
    public let devNumber: String?
    public let model: String?
    public let backingFile: String?
    public let fileID: String?

    init(_ d: DiskInfo) {
        path = d.path; size = d.size; serial = d.serial; isImageFile = d.isImageFile
        devNumber = d.devNumber; model = d.model; backingFile = d.backingFile; fileID = d.fileID
    }
    public var description: String { path }
}

/// One named step of an install, in order (the sequence is data: the dry run
/// shows it, the executor runs it, the tests read it).
public struct InstallPhase: Sendable, Equatable {
    public enum ID: String, Sendable, CaseIterable {
        case check, wipe, partition, stage, filesystems, data, bootloader, commit, sync
    }
    public var id: ID
    public var title: String
    /// Share of the progress bar (percent points).
    public var weight: Int

    public static let sequence: [InstallPhase] = [
        .init(id: .check, title: "confirm the target is still the planned disk and nothing on it is in use", weight: 2),
        .init(id: .wipe, title: "erase partition tables, filesystem signatures and any previous install", weight: 3),
        .init(id: .partition, title: "write a GPT: BIOS boot, ESP, system, config, data (1 MiB aligned)", weight: 5),
        .init(id: .stage, title: "build the ESP (GRUB for UEFI), system (kernel, initramfs, GRUB) and config filesystems", weight: 25),
        .init(id: .filesystems, title: "write the ESP and config filesystems", weight: 15),
        .init(id: .data, title: "make the data filesystem and copy the image store", weight: 25),
        .init(id: .bootloader, title: "install GRUB for BIOS: boot code in the MBR, core image in the BIOS boot partition", weight: 5),
        .init(id: .commit, title: "write the system filesystem, its superblock last: the disk becomes bootable", weight: 18),
        .init(id: .sync, title: "flush and have the kernel re-read the partition table", weight: 2),
    ]
}

public struct InstallPlan: Sendable, Equatable {
    public let target: PlannedTarget
    public var disk: DiskInfo
    /// Why the disk was chosen.
    public var reasons: [String]
    /// What the install destroys (empty for a blank disk).
    public var destroys: [String]
    /// Disks that matched but can never be targets, and why.
    public var excluded: [String]
    public var partitions: [PlannedPartition]
    public var phases: [InstallPhase]
    public var wipe: Bool
    public var selector: String

    public var json: JSONValue {
        .object([
            "target": .string(target.path),
            "disk": disk.json,
            "selector": .string(selector),
            "reasons": .array(reasons.map(JSONValue.string)),
            "destroys": .array(destroys.map(JSONValue.string)),
            "excluded": .array(excluded.map(JSONValue.string)),
            "wipe": .bool(wipe),
            "partitions": .array(partitions.map(\.json)),
            "phases": .array(phases.map { .object(["id": .string($0.id.rawValue), "title": .string($0.title)]) }),
        ])
    }

    /// The plan as a person reads it (dry run, console).
    public var text: String {
        var s = "install target: \(disk.label)\n"
        s += "  selected because: " + (reasons.isEmpty ? "named explicitly" : reasons.joined(separator: "; ")) + "\n"
        for e in excluded { s += "  not considered: \(e)\n" }
        if destroys.isEmpty {
            s += "  the disk is blank; nothing is destroyed\n"
        } else {
            s += "  DESTROYS everything on it:\n"
            for d in destroys { s += "    - \(d)\n" }
        }
        s += "  new layout (GPT):\n"
        for p in partitions {
            s += "    \(p.number) \(p.name)  \(Sizes.human(p.size))  \(p.filesystem ?? "-")\(p.label.map { " \"\($0)\"" } ?? "")\n"
        }
        s += "  steps:\n"
        for (i, ph) in phases.enumerated() { s += "    \(i + 1). \(ph.id.rawValue): \(ph.title)\n" }
        return s
    }
}

public enum PlanError: Error, Sendable, Equatable, CustomStringConvertible {
    case emptySelector
    case noMatch(selector: String, disks: [String])
    case ambiguous(selector: String, matches: [String])
    case bootMedium(String)
    case notEmpty(disk: String, contents: [String])
    case inUse(disk: String, mountpoints: [String])
    case readOnly(String)
    case tooSmall(disk: String, size: Int64)

    public var description: String {
        switch self {
        case .emptySelector:
            return "install.disk selects nothing: give at least one of path, by_id, serial, model, size, ssd"
        case .noMatch(let sel, let disks):
            return "no disk matches install.disk \(sel); disks present:\n" + disks.map { "  \($0)" }.joined(separator: "\n")
        case .ambiguous(let sel, let m):
            return "install.disk \(sel) matches \(m.count) disks; refusing to choose one. Narrow the selector (serial or by_id) to one of:\n" + m.map { "  \($0)" }.joined(separator: "\n")
        case .bootMedium(let d):
            return "\(d) is the medium CloudBIOS booted from; it is never an install target"
        case .notEmpty(let d, let c):
            return "\(d) is not empty; refusing to destroy it without `wipe: true`. It holds:\n" + c.map { "  \($0)" }.joined(separator: "\n")
        case .inUse(let d, let m):
            return "\(d) is in use (mounted at \(m.joined(separator: ", "))); refusing to touch it"
        case .readOnly(let d):
            return "\(d) is read-only"
        case .tooSmall(let d, let size):
            return "\(d) is too small (\(Sizes.human(size))); CloudBIOS needs at least \(Sizes.human(Layout.minimumDiskSize))"
        }
    }
}

extension PlanError: DomainError {
    /// A disk that holds something, is in use, is the boot medium or is one
    /// of several matches is there but may not be taken: a conflict. The
    /// rest (nothing matches, too small, read-only) cannot be planned at all.
    public var kind: ErrorKind {
        switch self {
        case .notEmpty, .inUse, .ambiguous, .bootMedium: .conflict
        case .emptySelector, .noMatch, .readOnly, .tooSmall: .invalid
        }
    }
}

/// Why an install request is refused before anything is written.
public enum InstallRefusal: DomainError, Sendable, Equatable {
    /// The body is not an install request.
    case body(String)
    /// No plan can be made (see `PlanError`).
    case plan(PlanError)
    /// What the install copies (kernel, GRUB, images) is not here.
    case sources(String)
    /// Another install (this task) is running.
    case busy(task: String)

    public var kind: ErrorKind {
        switch self {
        case .body: .badRequest
        case .plan(let e): e.kind
        case .sources, .busy: .conflict
        }
    }

    public var description: String {
        switch self {
        case .body(let m), .sources(let m): m
        case .plan(let e): e.description
        case .busy(let task): "install \(task) is still running"
        }
    }
}

/// Config + disk table → plan. Pure: no I/O, so every safety rule is tested
/// on fake disk tables.
public enum Planner {
    /// - Parameters:
    ///   - install: the `install:` section.
    ///   - disks: every disk on the machine (`Disks.list()`).
    ///   - target: `--target PATH` — chosen explicitly instead of by the
    ///     selector; every other check still applies.
    ///   - wipe: overrides `install.wipe` when given (API body).
    ///   - rawImageSize: plan writing a raw image of this size instead of the
    ///     CloudBIOS layout (`--write-image`); the same safety checks apply.
    public static func plan(_ install: InstallConfig, disks: [DiskInfo], target: DiskInfo? = nil, wipe: Bool? = nil,
                            rawImageSize: Int64? = nil) throws(PlanError) -> InstallPlan {
        let wipe = wipe ?? install.wipe
        let sel = install.disk
        var chosen: DiskInfo
        var reasons: [String]
        var excluded: [String] = []
        if let t = target {
            chosen = t
            reasons = ["named with --target \(t.path)"]
            if let bm = disks.first(where: { $0.isBootMedium && sameDisk($0, t) }) {
                throw .bootMedium(bm.label)
            }
        } else {
            guard !sel.isEmpty else { throw .emptySelector }
            var matches: [(DiskInfo, [String])] = []
            for d in disks {
                guard let why = sel.match(d) else { continue }
                if let bm = d.bootMedium {
                    excluded.append("\(d.label): the boot medium (\(bm))")
                } else if d.readOnly {
                    excluded.append("\(d.label): read-only")
                } else {
                    matches.append((d, why))
                }
            }
            if matches.isEmpty {
                if let only = disks.first(where: { sel.match($0) != nil && $0.isBootMedium }) {
                    throw .bootMedium(only.label)
                }
                throw .noMatch(selector: sel.summary, disks: disks.map(\.label))
            }
            if matches.count > 1 {
                throw .ambiguous(selector: sel.summary, matches: matches.map { "\($0.0.label): " + $0.1.joined(separator: "; ") })
            }
            (chosen, reasons) = matches[0]
        }
        if chosen.isBootMedium { throw .bootMedium(chosen.label) }
        if chosen.readOnly { throw .readOnly(chosen.label) }
        let mounted = chosen.allMountpoints
        if !mounted.isEmpty { throw .inUse(disk: chosen.label, mountpoints: mounted) }
        let parts: [PlannedPartition]
        if let raw = rawImageSize {
            guard raw <= chosen.size else { throw .tooSmall(disk: chosen.label, size: chosen.size) }
            parts = []
        } else {
            guard let p = Layout.partitions(diskSize: chosen.size) else { throw .tooSmall(disk: chosen.label, size: chosen.size) }
            parts = p
        }
        if chosen.holdsData && !wipe && !chosen.isInterruptedInstall { throw .notEmpty(disk: chosen.label, contents: chosen.contentsSummary) }
        return InstallPlan(target: PlannedTarget(chosen), disk: chosen, reasons: reasons, destroys: chosen.contentsSummary,
                           excluded: excluded, partitions: parts, phases: rawImageSize == nil ? InstallPhase.sequence : [], wipe: wipe,
                           selector: target != nil ? "--target \(chosen.path)" : sel.summary)
    }

    static func sameDisk(_ a: DiskInfo, _ b: DiskInfo) -> Bool {
        if a.path == b.path { return true }
        if let f = a.backingFile, f == b.path { return true }
        if let f = b.backingFile, f == a.path { return true }
        return false
    }
}
