import Config

/// A filesystem (or other signature: swap, LVM, RAID member) found on a disk
/// or a partition.
public struct FilesystemInfo: Sendable, Equatable {
    public var type: String
    public var label: String?
    public var uuid: String?
    public init(type: String, label: String? = nil, uuid: String? = nil) {
        self.type = type; self.label = label; self.uuid = uuid
    }
}

public struct PartitionInfo: Sendable, Equatable {
    public var number: Int
    /// Device node (`/dev/vda1`), nil for partitions inside an image file.
    public var path: String?
    /// Bytes from the start of the disk.
    public var start: Int64
    public var size: Int64
    /// GPT type GUID (lowercase) or MBR type (`0x83`).
    public var type: String?
    /// GPT partition name.
    public var name: String?
    public var filesystem: FilesystemInfo?
    /// Where it is mounted on this host, if anywhere.
    public var mountpoints: [String] = []
    public init(number: Int, start: Int64, size: Int64) {
        self.number = number; self.start = start; self.size = size
    }
}

public enum Transport: String, Sendable, Equatable, CaseIterable {
    case usb, nvme, sata, virtio, scsi, mmc, loop, file, unknown
}

/// One block device (or a disk image file given by path).
public struct DiskInfo: Sendable, Equatable {
    /// Kernel name (`vda`), or the file name for an image file.
    public var name: String
    /// `/dev/vda` or the image file's path.
    public var path: String
    public var size: Int64
    public var model: String?
    public var serial: String?
    /// `/dev/disk/by-id/…`: the udev link when present, else the name udev
    /// would give it (transport-model_serial).
    public var byID: String?
    public var transport: Transport
    public var rotational: Bool
    public var removable: Bool
    public var readOnly: Bool
    /// `gpt`, `dos`, … or nil when the disk has no partition table.
    public var partitionTable: String?
    public var partitions: [PartitionInfo] = []
    /// A filesystem on the whole disk (an ISO, a superfloppy).
    public var filesystem: FilesystemInfo?
    /// Why this is the medium CloudBIOS booted from, nil when it is not.
    public var bootMedium: String?
    /// Where the whole disk or one of its partitions is mounted here.
    public var mountpoints: [String] = []
    /// Loop devices: the file behind it.
    public var backingFile: String?
    /// A `cloudbios-installed` system found on it (label CBSYSTEM).
    public var cloudbiosInstalled: Bool = false
    /// Block devices: the device number, `MAJ:MIN` (sysfs `dev`).
    public var devNumber: String?
    /// Image files: the file's identity, `DEV:INODE` of the filesystem it is on.
    public var fileID: String?

    public init(name: String, path: String, size: Int64, transport: Transport) {
        self.name = name; self.path = path; self.size = size; self.transport = transport
        self.rotational = false; self.removable = false; self.readOnly = false
    }

    public var isBootMedium: Bool { bootMedium != nil }
    public var ssd: Bool { !rotational }
    public var isImageFile: Bool { transport == .file }

    /// Partitions, partition-table or filesystem signatures: what a wipe destroys.
    public var holdsData: Bool { partitionTable != nil || !partitions.isEmpty || filesystem != nil }

    /// Every mount point on the disk and its partitions.
    public var allMountpoints: [String] { mountpoints + partitions.flatMap(\.mountpoints) }

    /// A CloudBIOS install that stopped before its last step: only
    /// `cloudbios-*` GPT partitions and no CB-SYSTEM filesystem (the commit
    /// record). Installing again may overwrite it without `wipe`.
    public var isInterruptedInstall: Bool {
        partitionTable == "gpt" && !partitions.isEmpty && filesystem == nil
            && partitions.allSatisfy { ($0.name ?? "").hasPrefix("cloudbios-") }
            && !partitions.contains { $0.filesystem?.label == "CB-SYSTEM" }
    }

    /// One line per thing a wipe would destroy, for plans and refusals.
    public var contentsSummary: [String] {
        var out: [String] = []
        if let fs = filesystem { out.append("whole-disk \(fs.summary)") }
        if let pt = partitionTable { out.append("\(pt) partition table with \(partitions.count) partition\(partitions.count == 1 ? "" : "s")") }
        for p in partitions {
            var s = "partition \(p.number) (\(Sizes.human(p.size))"
            if let n = p.name, !n.isEmpty { s += ", \"\(n)\"" }
            s += ")"
            if let fs = p.filesystem { s += ": \(fs.summary)" }
            out.append(s)
        }
        return out
    }

    /// Short description for messages: `/dev/vda (8.0 GiB, virtio, serial TARGET01)`.
    public var label: String {
        var parts = [Sizes.human(size), transport.rawValue]
        if let m = model, !m.isEmpty { parts.append("model \(m)") }
        if let s = serial, !s.isEmpty { parts.append("serial \(s)") }
        return "\(path) (\(parts.joined(separator: ", ")))"
    }
}

extension FilesystemInfo {
    public var summary: String {
        var s = type
        if let l = label, !l.isEmpty { s += " \"\(l)\"" }
        if let u = uuid, !u.isEmpty { s += " \(u)" }
        return s
    }
}

// MARK: - JSON (GET /api/v1/disks)

extension FilesystemInfo: JSONRepresentable {
    public var json: JSONValue {
        .object(["type": .string(type), "label": label.map(JSONValue.string) ?? .null, "uuid": uuid.map(JSONValue.string) ?? .null])
    }
}

extension PartitionInfo: JSONRepresentable {
    public var json: JSONValue {
        .object([
            "number": .int(number),
            "path": path.map(JSONValue.string) ?? .null,
            "start": .int64(start),
            "size": .int64(size),
            "type": type.map(JSONValue.string) ?? .null,
            "name": name.map(JSONValue.string) ?? .null,
            "filesystem": filesystem.map { JSONValue.string($0.type) } ?? .null,
            "label": filesystem?.label.map(JSONValue.string) ?? .null,
            "uuid": filesystem?.uuid.map(JSONValue.string) ?? .null,
            "mountpoints": .array(mountpoints.map(JSONValue.string)),
            "mountpoint": mountpoints.first.map(JSONValue.string) ?? .null,
        ])
    }
}

extension DiskInfo: JSONRepresentable {
    public var json: JSONValue {
        .object([
            "name": .string(name),
            "path": .string(path),
            "size": .int64(size),
            "size_human": .string(Sizes.human(size)),
            "model": model.map(JSONValue.string) ?? .null,
            "serial": serial.map(JSONValue.string) ?? .null,
            "by_id": byID.map(JSONValue.string) ?? .null,
            "transport": .string(transport.rawValue),
            "rotational": .bool(rotational),
            "ssd": .bool(ssd),
            "removable": .bool(removable),
            "read_only": .bool(readOnly),
            "partition_table": partitionTable.map(JSONValue.string) ?? .null,
            "partitions": .array(partitions.map(\.json)),
            "filesystem": filesystem?.json ?? .null,
            "filesystems": .array(filesystem.map { [$0.json] } ?? []),
            "boot_medium": .bool(isBootMedium),
            "boot_medium_reason": bootMedium.map(JSONValue.string) ?? .null,
            "mountpoints": .array(mountpoints.map(JSONValue.string)),
            "backing_file": backingFile.map(JSONValue.string) ?? .null,
            "cloudbios_installed": .bool(cloudbiosInstalled),
        ])
    }
}

extension Array where Element == DiskInfo {
    /// `GET /api/v1/disks`: an array of disks.
    public var json: JSONValue { .array(map(\.json)) }
}
