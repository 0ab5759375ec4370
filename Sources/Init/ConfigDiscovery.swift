import Platform
import Disks

/// Filesystem labels the PE knows. The installer writes the installed ones.
public enum PELabel {
    /// A removable volume (USB stick, extra disk) holding `cloudbios.yaml`.
    public static let config = "CBCONFIG"
    /// The ISO / USB stick CloudBIOS booted from (ISO 9660 volume id).
    public static let bootMedium = "CLOUDBIOS"
    /// Installed disk: the system partition (kernel, initramfs, GRUB config).
    public static let system = "CB-SYSTEM"
    /// Installed disk: the config partition (`cloudbios.yaml` minus `install:`).
    public static let installedConfig = "CB-CONFIG"
    /// Installed disk: the data partition mounted at /var/lib/cloudbios.
    public static let data = "CB-DATA"
}

/// A block device with a filesystem, as blkid reports it.
public struct Volume: Equatable, Sendable {
    public var device: String
    public var label: String?
    public var type: String?
    public var uuid: String?
    public init(device: String, label: String? = nil, type: String? = nil, uuid: String? = nil) {
        self.device = device; self.label = label; self.type = type; self.uuid = uuid
    }

    /// The filesystem types PID 1 can mount (the core's drivers): a volume
    /// of another type can hold nothing the PE reads at boot.
    public static let mountableTypes = ["vfat", "ext4", "ext3", "ext2", "iso9660"]

    /// The filesystems on the block devices of `sys`/class/block (disks and
    /// partitions with a size; loop and RAM disks are the PE's own), probed
    /// with libblkid in this process, in device order, for the types PID 1
    /// can mount only (the others' signatures are more reads each, some at
    /// the far end of the device).
    public static func probeAll(sys: String = "/sys", dev: String = "/dev") -> [Volume] {
        Files.list(sys + "/class/block").sorted().compactMap { name -> Volume? in
            if name.hasPrefix("loop") || name.hasPrefix("ram") || name.hasPrefix("zram") { return nil }
            guard let size = Files.readTrimmed(sys + "/class/block/\(name)/size"), size != "0",
                  let fs = Probe.filesystem(of: dev + "/" + name, only: mountableTypes) else { return nil }
            return Volume(device: dev + "/" + name, label: fs.label, type: fs.type, uuid: fs.uuid)
        }
    }

    /// Parses `blkid` output: `/dev/vdb: LABEL="CBCONFIG" UUID="…" TYPE="vfat"`.
    public static func parseBlkid(_ text: String) -> [Volume] {
        text.split(separator: "\n").compactMap { line -> Volume? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            var v = Volume(device: String(line[..<colon]))
            var rest = Substring(line[line.index(after: colon)...])
            while let eq = rest.firstIndex(of: "=") {
                let key = rest[..<eq].trimmingSpaces()
                var after = rest[rest.index(after: eq)...]
                var value: Substring
                if after.first == "\"" {
                    after = after.dropFirst()
                    let end = after.firstIndex(of: "\"") ?? after.endIndex
                    value = after[..<end]
                    rest = end < after.endIndex ? after[after.index(after: end)...] : ""
                } else {
                    let end = after.firstIndex(of: " ") ?? after.endIndex
                    value = after[..<end]
                    rest = after[end...]
                }
                switch key {
                case "LABEL": v.label = String(value)
                case "TYPE": v.type = String(value)
                case "UUID": v.uuid = String(value)
                default: break
                }
            }
            return v
        }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

/// Where the config may come from, in the order DESIGN.md gives.
public enum ConfigSource: Equatable, Sendable, CustomStringConvertible {
    /// `cloudbios.config=http(s)://…`
    case url(String)
    /// `cloudbios.config=LABEL=NAME` or the CBCONFIG / boot medium /
    /// installed config volumes: `cloudbios.yaml` at the volume's root.
    case label(String)
    /// `cloudbios.config=/path` inside the PE (or on a mounted volume).
    case path(String)

    public var description: String {
        switch self {
        case .url(let u): return u
        case .label(let l): return "LABEL=\(l)"
        case .path(let p): return p
        }
    }

    public static func parse(_ text: String) -> ConfigSource {
        let lower = text.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") { return .url(text) }
        if text.hasPrefix("LABEL=") { return .label(String(text.dropFirst(6))) }
        return .path(text)
    }
}

/// One step of the config lookup, resolved against the volumes present.
public enum ConfigLookup: Equatable, Sendable {
    case fetch(url: String)
    case volume(Volume, file: String, source: ConfigSource)
    case file(path: String)
    /// An explicitly named source that cannot be found: reported as the config error.
    case missing(ConfigSource)
}

public enum ConfigDiscovery {
    public static let fileName = "cloudbios.yaml"

    /// The sources to try, in order: the kernel argument alone when given;
    /// otherwise the CBCONFIG volume, the boot medium, the installed config
    /// partition.
    public static func sources(_ cmdline: KernelCommandLine) -> [ConfigSource] {
        if let s = cmdline.configSource { return [ConfigSource.parse(s)] }
        return [.label(PELabel.config), .label(PELabel.bootMedium), .label(PELabel.system), .label(PELabel.installedConfig)]
    }

    /// Resolves sources against the volume table. Volumes with the same label
    /// are tried in device order.
    public static func plan(_ cmdline: KernelCommandLine, volumes: [Volume]) -> [ConfigLookup] {
        let explicit = cmdline.configSource != nil
        var out: [ConfigLookup] = []
        for s in sources(cmdline) {
            switch s {
            case .url(let u): out.append(.fetch(url: u))
            case .path(let p): out.append(.file(path: p))
            case .label(let l):
                let matches = volumes.filter { $0.label == l }.sorted { $0.device < $1.device }
                if matches.isEmpty {
                    if explicit { out.append(.missing(s)) }
                } else {
                    out += matches.map { .volume($0, file: fileName, source: s) }
                }
            }
        }
        return out
    }
}
