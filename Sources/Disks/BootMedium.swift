import Platform

/// What the medium CloudBIOS booted from is, independent of the path it
/// was found through: its boot volume's filesystem UUID and label, and the
/// whole disk's serial and size. PID 1 writes it (`boot-medium.id`) once it
/// knows the boot volume; disk listings and the installer's last check of
/// its target then recognise the medium behind any other path too (a USB
/// stick seen through a second bus, a multipath name, a device renamed
/// since boot), not only under the device name PID 1 saw.
public struct BootMediumIdentity: Sendable, Equatable {
    public var label: String?
    public var uuid: String?
    public var serial: String?
    public var size: Int64?

    public init(label: String? = nil, uuid: String? = nil, serial: String? = nil, size: Int64? = nil) {
        self.label = label; self.uuid = uuid; self.serial = serial; self.size = size
    }

    /// Whether anything in it can recognise a disk.
    public var isUsable: Bool { uuid != nil || (serial != nil && size != nil) }

    /// `KEY=value` lines (LABEL, UUID, SERIAL, SIZE); values never hold a
    /// line break.
    public var encoded: String {
        var out = ""
        for (k, v) in [("LABEL", label), ("UUID", uuid), ("SERIAL", serial), ("SIZE", size.map(String.init))] {
            if let v, !v.isEmpty, !v.contains("\n") { out += "\(k)=\(v)\n" }
        }
        return out
    }

    /// The identity in `text` (as `encoded` writes it); nil when it names
    /// nothing a disk can be recognised by.
    public static func parse(_ text: String) -> BootMediumIdentity? {
        var id = BootMediumIdentity()
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let v = String(line[line.index(after: eq)...])
            guard !v.isEmpty else { continue }
            switch line[..<eq] {
            case "LABEL": id.label = v
            case "UUID": id.uuid = v
            case "SERIAL": id.serial = v
            case "SIZE": id.size = Int64(v)
            default: break
            }
        }
        return id.isUsable ? id : nil
    }

    /// The identity PID 1 wrote, when there is one.
    public static func read(_ path: String) -> BootMediumIdentity? {
        Files.readTrimmed(path).flatMap(parse)
    }

    /// Why `d` is the boot medium, nil when nothing says it is: the boot
    /// volume (same UUID and label) on the whole disk or one of its
    /// partitions, or the same serial on a disk of the same size.
    public func match(_ d: DiskInfo) -> String? {
        if let uuid {
            let volumes = [d.filesystem].compactMap { $0 } + d.partitions.compactMap(\.filesystem)
            if volumes.contains(where: { $0.uuid == uuid && $0.label == label }) {
                return "holds the boot volume (" + (label.map { "LABEL=\($0), " } ?? "") + "UUID=\(uuid))"
            }
        }
        if let serial, let size, !serial.isEmpty, d.serial == serial, d.size == size {
            return "same serial (\(serial)) and size as the boot medium"
        }
        return nil
    }
}
