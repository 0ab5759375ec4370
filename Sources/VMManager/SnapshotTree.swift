#if canImport(Glibc)
import Glibc
#endif
import Config

/// A VM's snapshots as a tree: each one's parent is the snapshot that was
/// current when it was taken; `current` is the one the VM's present state
/// descends from (moved by a take and a revert). Pure: the VM manager keeps
/// it beside the disks (`STATE/disks/NAME/snapshots.json`) and does the
/// QEMU and qemu-img work.
public struct SnapshotTree: Sendable, Equatable {
    public var snapshots: [SnapshotRecord] = []
    public var current: String?

    public init() {}

    public func record(_ name: String) -> SnapshotRecord? { snapshots.first { $0.name == name } }

    /// Adds a snapshot taken now: its parent is the current one, and it
    /// becomes current.
    public mutating func add(_ r: SnapshotRecord) {
        var r = r
        r.parent = current
        snapshots.append(r)
        current = r.name
    }

    /// The VM went back to `name`: it is current now.
    public mutating func revert(to name: String) {
        guard record(name) != nil else { return }
        current = name
    }

    /// Removes a snapshot; its children hang from its parent now, and when
    /// it was current its parent is.
    public mutating func remove(_ name: String) {
        guard let gone = record(name) else { return }
        snapshots.removeAll { $0.name == name }
        for i in snapshots.indices where snapshots[i].parent == name { snapshots[i].parent = gone.parent }
        if current == name { current = gone.parent }
    }

    /// The names of the snapshots below `name` (its children).
    public func children(of name: String) -> [String] {
        snapshots.filter { $0.parent == name }.map(\.name)
    }

    /// What differs between the hardware a memory snapshot was taken on and
    /// `now` (its RAM only loads into the same machine), or nil.
    public static func hardwareChange(from then: VMSpec, to now: VMSpec) -> String? {
        if then.memory != now.memory { return "memory \(then.memory) MiB → \(now.memory) MiB" }
        if then.cpus != now.cpus { return "cpus \(then.cpus) → \(now.cpus)" }
        if then.firmware != now.firmware { return "firmware \(then.firmware.rawValue) → \(now.firmware.rawValue)" }
        let a = then.disks.compactMap(\.id), b = now.disks.compactMap(\.id)
        if a != b { return "disks [\(a.joined(separator: ", "))] → [\(b.joined(separator: ", "))]" }
        if then.network != now.network { return "network \(then.network.rawValue) → \(now.network.rawValue)" }
        if then.agent != now.agent { return "agent \(then.agent) → \(now.agent)" }
        if (then.cloudInit == nil) != (now.cloudInit == nil) { return "cloud_init \(then.cloudInit == nil ? "added" : "removed")" }
        return nil
    }
}

/// One snapshot of a VM.
public struct SnapshotRecord: Sendable, Equatable {
    /// How the disks were caught.
    public enum Consistency: String, Sendable, Equatable, CaseIterable {
        /// With the RAM: the guest's whole state, consistent by nature.
        case memory
        /// Disks only, the guest's filesystems frozen by its agent meanwhile.
        case quiesced
        /// Disks only of a running guest without a responding agent: as after a power cut.
        case crashConsistent = "crash-consistent"
        /// Disks only of a stopped VM (qemu-img).
        case stopped
    }

    public var name: String
    /// RFC 3339, UTC.
    public var time: String
    public var memory: Bool { consistency == .memory }
    public var consistency: Consistency
    public var parent: String?
    /// The ids of the disks it covers (the VM's qcow2 disks then).
    public var disks: [String]
    /// The disk holding the RAM, for a memory snapshot.
    public var vmstateDisk: String?
    /// The VM's definition when it was taken.
    public var spec: VMSpec?

    public init(name: String, time: String, consistency: Consistency, disks: [String], vmstateDisk: String? = nil, spec: VMSpec? = nil) {
        self.name = name; self.time = time; self.consistency = consistency; self.disks = disks
        self.vmstateDisk = vmstateDisk; self.spec = spec
    }

    /// Whether the guest's filesystems were frozen through its agent.
    public var quiesced: Bool { consistency == .quiesced }
}

extension SnapshotRecord: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "time": .string(time), "memory": .bool(memory), "quiesced": .bool(quiesced),
            "consistency": .string(consistency.rawValue), "parent": parent.map { .string($0) } ?? .null,
            "disks": .array(disks.map { .string($0) }),
        ]
        if let vmstateDisk { o["vmstate_disk"] = .string(vmstateDisk) }
        if let spec { o["spec"] = spec.json }
        return .object(o)
    }

    init?(json v: JSONValue) {
        guard let name = v["name"]?.stringValue, Names.checkSnapshot(name) == nil, let time = v["time"]?.stringValue,
              let c = v["consistency"]?.stringValue.flatMap(Consistency.init(rawValue:)),
              let disks = v["disks"]?.arrayValue?.compactMap(\.stringValue) else { return nil }
        self.init(name: name, time: time, consistency: c, disks: disks.filter { Names.checkDiskID($0) == nil },
                  vmstateDisk: v["vmstate_disk"]?.stringValue.flatMap { Names.checkDiskID($0) == nil ? $0 : nil })
        parent = v["parent"]?.stringValue
        if let s = v["spec"] { spec = try? VMSpec.decode(json: s.bytes, file: "snapshot \(name)") }
    }
}

extension SnapshotTree {
    /// The list the API shows: each snapshot with `current` set on the one
    /// the VM's state descends from.
    public var json: JSONValue {
        .array(snapshots.map { r in
            guard case .object(var o) = r.json else { return .null }
            o["current"] = .bool(r.name == current)
            return .object(o)
        })
    }

    /// What is stored: `{"current": …, "snapshots": [...]}`.
    var stored: JSONValue {
        .object(["current": current.map { .string($0) } ?? .null, "snapshots": .array(snapshots.map(\.json))])
    }

    init(stored v: JSONValue) {
        self.init()
        snapshots = (v["snapshots"]?.arrayValue ?? []).compactMap { SnapshotRecord(json: $0) }
        let names = Set(snapshots.map(\.name))
        current = v["current"]?.stringValue.flatMap { names.contains($0) ? $0 : nil }
        for i in snapshots.indices where snapshots[i].parent.map({ !names.contains($0) }) == true { snapshots[i].parent = nil }
    }

    /// Now, as RFC 3339 UTC.
    static func timestamp(_ t: Double) -> String {
        var secs = time_t(t)
        var tm = tm()
        gmtime_r(&secs, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
    }
}
