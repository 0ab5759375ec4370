import CParted
import Platform

/// The last libparted exception message (libparted reports through a
/// global handler; installs are serialized, see `GPTWriter.lock`).
nonisolated(unsafe) private var lastPartedMessage = ""

private let partedHandler: @convention(c) (UnsafeMutablePointer<PedException>?) -> PedExceptionOption = { ex in
    guard let ex else { return PED_EXCEPTION_CANCEL }
    if let m = ex.pointee.message { lastPartedMessage = String(cString: m) }
    // Never prompt: fix what libparted offers to fix (a file's backup GPT
    // not at the end), otherwise cancel.
    let options = ex.pointee.options.rawValue
    if options & PED_EXCEPTION_FIX.rawValue != 0 && ex.pointee.type.rawValue < PED_EXCEPTION_ERROR.rawValue { return PED_EXCEPTION_FIX }
    if options & PED_EXCEPTION_IGNORE.rawValue != 0 && ex.pointee.type.rawValue < PED_EXCEPTION_ERROR.rawValue { return PED_EXCEPTION_IGNORE }
    return PED_EXCEPTION_CANCEL
}

/// A libparted device handle.
final class PartedDevice {
    let dev: UnsafeMutablePointer<PedDevice>
    init(_ target: PlannedTarget) throws {
        ped_exception_set_handler(partedHandler)
        lastPartedMessage = ""
        guard let d = ped_device_get(target.path) else { throw InstallError.parted("cannot open \(target.path): \(lastPartedMessage)") }
        dev = d
        guard ped_device_open(dev) != 0 else {
            ped_device_destroy(dev)
            throw InstallError.parted("cannot open \(target.path): \(lastPartedMessage)")
        }
    }
    deinit {
        _ = ped_device_close(dev)
        ped_device_destroy(dev)
    }
    var sectorSize: Int64 { Int64(dev.pointee.sector_size) }
}

/// A libparted partition table being built.
final class PartedDisk {
    let disk: UnsafeMutablePointer<PedDisk>
    init(fresh device: PartedDevice, type: String) throws {
        guard let t = ped_disk_type_get(type), let d = ped_disk_new_fresh(device.dev, t) else {
            throw InstallError.parted("cannot create a \(type) table: \(lastPartedMessage)")
        }
        disk = d
    }
    deinit { ped_disk_destroy(disk) }
}

/// Writes the installed disk's GPT through libparted.
public enum GPTWriter {
    public static func write(_ partitions: [PlannedPartition], to target: PlannedTarget) throws {
        let device = try PartedDevice(target)
        let disk = try PartedDisk(fresh: device, type: "gpt")
        let ss = device.sectorSize
        for p in partitions {
            let fsName: String? = switch p.role {
            case .esp: "fat32"
            case .biosBoot: nil
            default: "ext4"
            }
            let fsType = fsName.flatMap { ped_file_system_type_get($0) }
            guard let part = ped_partition_new(disk.disk, PED_PARTITION_NORMAL, fsType, p.start / ss, p.end / ss - 1) else {
                throw InstallError.parted("partition \(p.number): \(lastPartedMessage)")
            }
            guard let c = ped_constraint_exact(&part.pointee.geom) else { throw InstallError.parted("constraint") }
            defer { ped_constraint_destroy(c) }
            guard ped_disk_add_partition(disk.disk, part, c) != 0 else {
                ped_partition_destroy(part)
                throw InstallError.parted("partition \(p.number) (\(p.name)): \(lastPartedMessage)")
            }
            _ = ped_partition_set_name(part, p.name)
            switch p.role {
            case .biosBoot: _ = ped_partition_set_flag(part, PED_PARTITION_BIOS_GRUB, 1)
            case .esp: _ = ped_partition_set_flag(part, PED_PARTITION_ESP, 1)
            default: break
            }
        }
        guard ped_disk_commit_to_dev(disk.disk) != 0 else {
            throw InstallError.parted("writing the table to \(target.path): \(lastPartedMessage)")
        }
        _ = ped_device_sync(device.dev)
    }
}
