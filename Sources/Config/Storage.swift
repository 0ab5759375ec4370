/// Where the daemon's state (image store, VM definitions and disks,
/// backups) lives, as `GET /api/v1/host` reports it under `storage`.
public struct HostStorage: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A tmpfs: everything is gone at the next boot.
        case ram
        /// A `CB-DATA` partition found on a disk at boot (an ISO or USB boot).
        case dataPartition = "data-partition"
        /// The installed system's own data partition.
        case installed
        /// Any other directory (a daemon run on a development host).
        case directory
    }
    public var kind: Kind
    /// The state directory.
    public var path: String
    /// The filesystem's device, its type and label, when it has them.
    public var device: String?
    public var filesystem: String?
    public var label: String?
    public var sizeBytes: Int64?
    public var freeBytes: Int64?
    /// One sentence a person reads (the panel's banner says it).
    public var note: String
    public init(kind: Kind, path: String, note: String) {
        self.kind = kind; self.path = path; self.note = note
    }
}

extension HostStorage: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = ["kind": .string(kind.rawValue), "path": .string(path), "note": .string(note),
                                      "persistent": .bool(kind != .ram)]
        if let device { o["device"] = .string(device) }
        if let filesystem { o["filesystem"] = .string(filesystem) }
        if let label { o["label"] = .string(label) }
        if let sizeBytes { o["size"] = .int64(sizeBytes) }
        if let freeBytes { o["free"] = .int64(freeBytes) }
        return .object(o)
    }
}

extension Names {
    /// A block device's kernel name as `/dev` has it (`sdb`, `vdb`,
    /// `nvme0n1`, `mmcblk0`): nil when valid, else why not.
    public static func checkBlockDevice(_ name: String) -> String? {
        let ok = !name.isEmpty && name.utf8.count <= 32 && name.utf8.first.map { $0 >= 0x61 && $0 <= 0x7a } == true
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x5f }
        return ok ? nil : "'\(clip(name))' is not a disk name (as /dev names it: sdb, vdb, nvme0n1)"
    }
}
