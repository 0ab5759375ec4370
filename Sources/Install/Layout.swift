import Config

/// The installed disk's partitions. Fixed layout, 1 MiB aligned; the data
/// partition takes the rest of the disk.
public struct PlannedPartition: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable, CaseIterable { case biosBoot = "bios-boot", esp, system, config, data }
    public var number: Int
    public var role: Role
    /// GPT partition name.
    public var name: String
    /// Bytes.
    public var start: Int64
    public var size: Int64
    /// Filesystem type made on it (nil for the BIOS boot partition).
    public var filesystem: String?
    /// Filesystem label the PE looks for.
    public var label: String?
    public var end: Int64 { start + size }
}

public enum Layout {
    public static let mib: Int64 = 1 << 20
    public static let biosBootSize = 1 * mib
    public static let espSize = 128 * mib
    public static let systemSize = 512 * mib
    public static let configSize = 32 * mib
    public static let minimumDataSize = 256 * mib

    /// Labels shared with PID 1 (which finds the installed system by them).
    public static let systemLabel = "CB-SYSTEM"
    public static let configLabel = "CB-CONFIG"
    public static let dataLabel = "CB-DATA"
    public static let espLabel = "CB-ESP"

    /// The smallest disk the layout fits on.
    public static var minimumDiskSize: Int64 { mib + biosBootSize + espSize + systemSize + configSize + minimumDataSize + mib }

    /// Partitions for a disk of `size` bytes (nil when too small). The last
    /// MiB stays free for the backup GPT.
    public static func partitions(diskSize size: Int64) -> [PlannedPartition]? {
        guard size >= minimumDiskSize else { return nil }
        var out: [PlannedPartition] = []
        var at = mib
        func add(_ role: PlannedPartition.Role, _ name: String, _ sz: Int64, _ fs: String?, _ label: String?) {
            out.append(PlannedPartition(number: out.count + 1, role: role, name: name, start: at, size: sz, filesystem: fs, label: label))
            at += sz
        }
        add(.biosBoot, "cloudbios-bios", biosBootSize, nil, nil)
        add(.esp, "cloudbios-esp", espSize, "vfat", espLabel)
        add(.system, "cloudbios-system", systemSize, "ext4", systemLabel)
        add(.config, "cloudbios-config", configSize, "ext4", configLabel)
        let end = (size - mib) / mib * mib
        add(.data, "cloudbios-data", end - at, "ext4", dataLabel)
        return out
    }
}

extension PlannedPartition: JSONRepresentable {
    public var json: JSONValue {
        .object([
            "number": .int(number), "role": .string(role.rawValue), "name": .string(name),
            "start": .int64(start), "size": .int64(size), "size_human": .string(Sizes.human(size)),
            "filesystem": filesystem.map(JSONValue.string) ?? .null, "label": label.map(JSONValue.string) ?? .null,
        ])
    }
}
