#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// The backups on a backup target and the rules over them (chains,
/// retention, what a deletion must merge). Pure where it can be: reading
/// the target's `ID/backup.json` files is the only I/O, so the chain and
/// retention logic is tested on plain records.
///
/// Target layout:
/// ```
/// TARGET/ID/backup.json        the record (written last, by rename: a backup without it is not one)
/// TARGET/ID/DISK.qcow2         one file per disk; an incremental's has ../PARENT/DISK.qcow2 as backing file
/// TARGET/.partial-ID/          a backup under way (holds `vm`); renamed to ID when complete
/// ```

/// `full` holds every block; `incremental` only the blocks changed since its
/// parent, over which its files are qcow2 overlays.
public enum BackupKind: String, Sendable, Equatable {
    case full, incremental
}

/// `POST /api/v1/vms/{name}/backups` `{"mode": …}`.
public enum BackupMode: String, Sendable, Equatable, CaseIterable {
    /// Incremental when a valid chain exists, else full.
    case auto
    case full
    case incremental
}

/// A backup file's checksum, under the key naming its algorithm in
/// `backup.json`: `xxh128` (XXH3-128) for backups made now, read back at
/// memory speed while the file is synced to the disk; `sha256` for backups
/// made before, still verified as they are.
public struct BackupChecksum: Sendable, Equatable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case xxh128, sha256

        /// Hex digits of a value.
        var digits: Int { self == .xxh128 ? 32 : 64 }
    }

    public var algorithm: Algorithm
    /// Lowercase hex.
    public var value: String

    public init(_ algorithm: Algorithm, _ value: String) { self.algorithm = algorithm; self.value = value }

    /// The algorithm new backups use.
    public static let current = Algorithm.xxh128

    /// The checksum of the file at `path` by `algorithm`.
    public static func of(_ path: String, _ algorithm: Algorithm = current) throws -> BackupChecksum {
        switch algorithm {
        case .xxh128: BackupChecksum(.xxh128, try xxh128File(path))
        case .sha256: BackupChecksum(.sha256, try sha256File(path))
        }
    }

    /// From a disk's entry of `backup.json`: the first algorithm it names
    /// with a well-formed value.
    init?(entry d: JSONValue) {
        for a in Algorithm.allCases {
            guard let s = d[a.rawValue]?.stringValue else { continue }
            let u = Array(s.utf8)
            guard u.count == a.digits, u.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
            self.init(a, s)
            return
        }
        return nil
    }
}

/// One disk of a backup.
public struct BackupDisk: Sendable, Equatable {
    /// The VM's disk id (`root`, `data`, …).
    public var id: String
    public var virtualSize: Int64
    /// The file, relative to the backup's directory (`root.qcow2`).
    public var file: String
    public var checksum: BackupChecksum
    /// Bytes of the file on the target.
    public var size: Int64

    public init(id: String, virtualSize: Int64, file: String, checksum: BackupChecksum, size: Int64) {
        self.id = id; self.virtualSize = virtualSize; self.file = file; self.checksum = checksum; self.size = size
    }

    var json: JSONValue {
        .object(["id": .string(id), "virtual_size": .int64(virtualSize), "file": .string(file),
                 checksum.algorithm.rawValue: .string(checksum.value), "size": .int64(size)])
    }
}

/// A backup as its `backup.json` describes it: enough to restore it on
/// another machine (the VM's definition, each disk's size, file and checksum,
/// the backup it builds on).
public struct BackupRecord: Sendable, Equatable {
    public var id: String
    public var vm: String
    /// UTC, RFC 3339 with milliseconds: `2026-12-07T02:00:01.250Z`.
    public var time: String
    public var kind: BackupKind
    public var parent: String?
    /// The VM's definition (the API's JSON) when it was backed up.
    public var spec: JSONValue
    public var disks: [BackupDisk]

    public init(id: String, vm: String, time: String, kind: BackupKind, parent: String?, spec: JSONValue, disks: [BackupDisk]) {
        self.id = id; self.vm = vm; self.time = time; self.kind = kind; self.parent = parent; self.spec = spec; self.disks = disks
    }

    /// Bytes of this backup's own files (not its parents').
    public var size: Int64 { disks.reduce(0) { $0 + $1.size } }

    /// What `GET /api/v1/backups` lists.
    public var summary: JSONValue {
        .object(["id": .string(id), "vm": .string(vm), "time": .string(time), "kind": .string(kind.rawValue),
                 "size": .int64(size), "parent": parent.map { .string($0) } ?? .null])
    }

    public var json: JSONValue {
        guard case .object(var o) = summary else { return .null }
        o["format"] = .int(1)
        o["spec"] = spec
        o["disks"] = .array(disks.map(\.json))
        return .object(o)
    }

    /// Reads a `backup.json`; nil when it is not one (every name checked:
    /// they become paths).
    public static func decode(_ v: JSONValue) -> BackupRecord? {
        guard let id = v["id"]?.stringValue, checkID(id) == nil,
              let vm = v["vm"]?.stringValue, Names.checkVM(vm) == nil,
              let time = v["time"]?.stringValue, let kind = v["kind"]?.stringValue.flatMap(BackupKind.init(rawValue:)),
              let spec = v["spec"], spec.objectValue != nil, let disks = v["disks"]?.arrayValue else { return nil }
        var parent: String?
        if let p = v["parent"], !p.isNull {
            guard let s = p.stringValue, checkID(s) == nil else { return nil }
            parent = s
        }
        guard (kind == .full) == (parent == nil) else { return nil }
        var out: [BackupDisk] = []
        for d in disks {
            guard let did = d["id"]?.stringValue, Names.checkDiskID(did) == nil, let vs = d["virtual_size"]?.int64Value,
                  let file = d["file"]?.stringValue, file == "\(did).qcow2",
                  let sum = BackupChecksum(entry: d), let size = d["size"]?.int64Value else { return nil }
            out.append(BackupDisk(id: did, virtualSize: vs, file: file, checksum: sum, size: size))
        }
        return BackupRecord(id: id, vm: vm, time: time, kind: kind, parent: parent, spec: spec, disks: out)
    }

    /// Backup ids: `YYYYMMDD-HHMMSS-` and 4 to 16 lower-case hex digits.
    public static func checkID(_ id: String) -> String? { Names.checkBackupID(id) }

    /// A new id for a backup taken at `wall` (seconds since the epoch).
    static func newID(wall: Double) -> String {
        let c = CivilTime(wall)
        let stamp = "\(c.pad(c.year, 4))\(c.pad(c.month))\(c.pad(c.day))-\(c.pad(c.hour))\(c.pad(c.minute))\(c.pad(c.second))"
        return stamp + "-" + String(UInt32.random(in: 0x1000...0xffff), radix: 16)
    }

    /// `time` for a backup taken at `wall`.
    static func timestamp(_ wall: Double) -> String {
        let c = CivilTime(wall)
        return "\(c.pad(c.year, 4))-\(c.pad(c.month))-\(c.pad(c.day))T\(c.pad(c.hour)):\(c.pad(c.minute)):\(c.pad(c.second)).\(c.pad(c.millis, 3))Z"
    }

    /// The UTC day (`2026-12-07`) of `time`.
    var day: String { String(time.prefix(10)) }

    /// The Monday-based week of `time`, counted from the epoch.
    var week: Int {
        let p = day.split(separator: "-").compactMap { Int($0) }
        guard p.count == 3 else { return 0 }
        let days = CivilTime.daysFromCivil(p[0], p[1], p[2])
        // 1970-01-01 was a Thursday: +3 makes weeks start on Mondays
        return Int((Double(days + 3) / 7).rounded(.down))
    }
}

/// UTC calendar fields of a wall-clock time.
struct CivilTime {
    var year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, millis = 0

    init(_ wall: Double) {
        let secs = Int(wall.rounded(.down))
        millis = min(999, Int((wall - Double(secs)) * 1000))
        var days = secs / 86400
        var rem = secs % 86400
        if rem < 0 { rem += 86400; days -= 1 }
        hour = rem / 3600; minute = rem % 3600 / 60; second = rem % 60
        // Howard Hinnant's civil_from_days
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }

    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    func pad(_ v: Int, _ n: Int = 2) -> String {
        let s = String(v)
        return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
    }
}

/// How many backups of each VM retention keeps (`backups.keep`).
public struct BackupKeep: Sendable, Equatable {
    public var last: Int
    public var daily: Int
    public var weekly: Int
    public init(last: Int = 3, daily: Int = 7, weekly: Int = 4) { self.last = last; self.daily = daily; self.weekly = weekly }
}

/// The backups of a target and what can be done with them, as rules over
/// records.
enum BackupChains {
    /// `id`'s chain from its full backup to itself, or nil when a link is
    /// missing (or loops).
    static func chain(_ id: String, in all: [String: BackupRecord]) -> [BackupRecord]? {
        var out: [BackupRecord] = []
        var cur: String? = id
        while let c = cur {
            guard let r = all[c], out.count <= all.count else { return nil }
            out.append(r)
            cur = r.parent
        }
        return out.reversed()
    }

    /// The backups whose parent is `id`.
    static func children(_ id: String, in all: [String: BackupRecord]) -> [BackupRecord] {
        all.values.filter { $0.parent == id }.sorted { ($0.time, $0.id) < ($1.time, $1.id) }
    }

    /// The newest backup of `vm`.
    static func latest(of vm: String, in all: [String: BackupRecord]) -> BackupRecord? {
        all.values.filter { $0.vm == vm }.max { ($0.time, $0.id) < ($1.time, $1.id) }
    }

    /// The ids retention keeps of one VM's backups: the newest always, the
    /// `last` newest, the newest of each of the `daily` most recent days and
    /// of the `weekly` most recent weeks that have backups; then every
    /// backup a kept one builds on, so nothing kept loses its chain.
    static func retained(_ records: [BackupRecord], keep: BackupKeep, all: [String: BackupRecord]) -> Set<String> {
        let newest = records.sorted { ($0.time, $0.id) > ($1.time, $1.id) }
        var kept: Set<String> = []
        if let first = newest.first { kept.insert(first.id) }
        for r in newest.prefix(max(0, keep.last)) { kept.insert(r.id) }
        var days: [String] = []
        var weeks: [Int] = []
        for r in newest {
            if days.count < keep.daily, !days.contains(r.day) { days.append(r.day); kept.insert(r.id) }
            if weeks.count < keep.weekly, !weeks.contains(r.week) { weeks.append(r.week); kept.insert(r.id) }
        }
        for id in kept {
            for r in chain(id, in: all) ?? [] { kept.insert(r.id) }
        }
        return kept
    }

    /// What deleting `id` takes: nothing else when no backup builds on it;
    /// for an incremental with children, each child is rebased onto the
    /// deleted one's parent (its blocks merged into the child); a full
    /// backup with children cannot go (the children would lose their base).
    enum DeletePlan: Equatable {
        case remove
        case mergeInto(children: [String], newParent: String)
        case refused(String)
    }

    static func deletePlan(_ id: String, in all: [String: BackupRecord]) -> DeletePlan {
        guard let r = all[id] else { return .refused("no backup '\(id)'") }
        let kids = children(id, in: all)
        if kids.isEmpty { return .remove }
        guard let parent = r.parent else {
            return .refused("backup '\(id)' is the full backup that \(kids.map { "'\($0.id)'" }.joined(separator: ", ")) build on; delete those first")
        }
        for k in kids {
            // a child whose disks differ from its parent's cannot take the grandparent as its base
            for d in k.disks where !(all[parent]?.disks.contains { $0.id == d.id && $0.virtualSize == d.virtualSize } ?? false) {
                return .refused("backup '\(k.id)' has disk '\(d.id)' which '\(parent)' lacks; it cannot be merged")
            }
        }
        return .mergeInto(children: kids.map(\.id), newParent: parent)
    }
}

/// A directory of backups (`backups.target`).
struct BackupCatalog: Sendable {
    let directory: String

    func path(_ id: String) -> String { "\(directory)/\(id)" }
    func recordPath(_ id: String) -> String { "\(directory)/\(id)/backup.json" }
    func partialPath(_ id: String) -> String { "\(directory)/.partial-\(id)" }

    /// Every complete backup on the target, by id.
    func all() -> [String: BackupRecord] {
        var out: [String: BackupRecord] = [:]
        for f in Files.list(directory) where BackupRecord.checkID(f) == nil {
            guard let bytes = try? Files.read(recordPath(f), limit: 4 << 20), let v = try? JSONValue.parse(bytes),
                  let r = BackupRecord.decode(v), r.id == f else { continue }
            out[r.id] = r
        }
        return out
    }

    /// Backups under way (or cut short by a crash): id and VM.
    func partials() -> [(id: String, vm: String)] {
        Files.list(directory).compactMap { f in
            guard f.hasPrefix(".partial-") else { return nil }
            let id = String(f.dropFirst(9))
            guard BackupRecord.checkID(id) == nil else { return nil }
            return (id, Files.readTrimmed("\(directory)/\(f)/vm") ?? "")
        }
    }

    /// Writes the record (by rename) into the partial directory, then
    /// renames the directory to its id: only a whole backup ever appears.
    func commit(_ r: BackupRecord) throws {
        let dir = partialPath(r.id)
        try Files.writeAtomically("\(dir)/backup.json", r.json.serialized(pretty: true) + "\n")
        Files.remove("\(dir)/vm")
        syncDirectory(dir)
        try syscall("rename \(dir)") { rename(dir, path(r.id)) }
        syncDirectory(directory)
    }

    /// Rewrites a complete backup's record (after a merge changed its files).
    func rewrite(_ r: BackupRecord) throws {
        try Files.writeAtomically(recordPath(r.id), r.json.serialized(pretty: true) + "\n")
        syncDirectory(path(r.id))
    }

    /// Removes a backup: its record first, so a crash half-way leaves no
    /// record of a backup whose files are gone.
    func remove(_ id: String) {
        Files.remove(recordPath(id))
        syncDirectory(path(id))
        Files.removeTree(path(id))
        syncDirectory(directory)
    }

    func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
