import CParted
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// libparted, loaded the first time a partition table is written. It is
/// not linked: its initialisers run `dmidecode` through a shell (to spot
/// Intel Macs), which every cloudbios process — the daemon, `disks`, a
/// plain `--write-image` — would otherwise pay for at start-up.
final class Libparted: @unchecked Sendable {
    typealias DevicePtr = UnsafeMutablePointer<PedDevice>
    typealias DiskPtr = UnsafeMutablePointer<PedDisk>
    typealias PartitionPtr = UnsafeMutablePointer<PedPartition>
    typealias ConstraintPtr = UnsafeMutablePointer<PedConstraint>
    typealias Handler = @convention(c) (UnsafeMutablePointer<PedException>?) -> PedExceptionOption

    let exceptionSetHandler: @convention(c) (Handler?) -> Void
    let deviceGet: @convention(c) (UnsafePointer<CChar>?) -> DevicePtr?
    let deviceOpen: @convention(c) (DevicePtr?) -> Int32
    let deviceClose: @convention(c) (DevicePtr?) -> Int32
    let deviceDestroy: @convention(c) (DevicePtr?) -> Void
    let deviceSync: @convention(c) (DevicePtr?) -> Int32
    let diskTypeGet: @convention(c) (UnsafePointer<CChar>?) -> UnsafeMutablePointer<PedDiskType>?
    let diskNewFresh: @convention(c) (DevicePtr?, UnsafePointer<PedDiskType>?) -> DiskPtr?
    let diskDestroy: @convention(c) (DiskPtr?) -> Void
    let diskAddPartition: @convention(c) (DiskPtr?, PartitionPtr?, UnsafePointer<PedConstraint>?) -> Int32
    let diskCommitToDev: @convention(c) (DiskPtr?) -> Int32
    let fileSystemTypeGet: @convention(c) (UnsafePointer<CChar>?) -> UnsafeMutablePointer<PedFileSystemType>?
    let partitionNew: @convention(c) (UnsafePointer<PedDisk>?, PedPartitionType, UnsafePointer<PedFileSystemType>?, PedSector, PedSector) -> PartitionPtr?
    let partitionDestroy: @convention(c) (PartitionPtr?) -> Void
    let partitionSetName: @convention(c) (PartitionPtr?, UnsafePointer<CChar>?) -> Int32
    let partitionSetFlag: @convention(c) (PartitionPtr?, PedPartitionFlag, Int32) -> Int32
    let constraintExact: @convention(c) (UnsafePointer<PedGeometry>?) -> ConstraintPtr?
    let constraintDestroy: @convention(c) (ConstraintPtr?) -> Void

    static let names = ["libparted.so.2", "/usr/lib/x86_64-linux-gnu/libparted.so.2", "/lib/x86_64-linux-gnu/libparted.so.2",
                        "/usr/lib64/libparted.so.2", "/usr/lib/libparted.so.2"]

    private init(_ h: UnsafeMutableRawPointer) throws(InstallError) {
        func sym<T>(_ name: String, _: T.Type) throws(InstallError) -> T {
            guard let p = dlsym(h, name) else { throw .parted("libparted has no \(name)") }
            return unsafeBitCast(p, to: T.self)
        }
        exceptionSetHandler = try sym("ped_exception_set_handler", type(of: exceptionSetHandler))
        deviceGet = try sym("ped_device_get", type(of: deviceGet))
        deviceOpen = try sym("ped_device_open", type(of: deviceOpen))
        deviceClose = try sym("ped_device_close", type(of: deviceClose))
        deviceDestroy = try sym("ped_device_destroy", type(of: deviceDestroy))
        deviceSync = try sym("ped_device_sync", type(of: deviceSync))
        diskTypeGet = try sym("ped_disk_type_get", type(of: diskTypeGet))
        diskNewFresh = try sym("ped_disk_new_fresh", type(of: diskNewFresh))
        diskDestroy = try sym("ped_disk_destroy", type(of: diskDestroy))
        diskAddPartition = try sym("ped_disk_add_partition", type(of: diskAddPartition))
        diskCommitToDev = try sym("ped_disk_commit_to_dev", type(of: diskCommitToDev))
        fileSystemTypeGet = try sym("ped_file_system_type_get", type(of: fileSystemTypeGet))
        partitionNew = try sym("ped_partition_new", type(of: partitionNew))
        partitionDestroy = try sym("ped_partition_destroy", type(of: partitionDestroy))
        partitionSetName = try sym("ped_partition_set_name", type(of: partitionSetName))
        partitionSetFlag = try sym("ped_partition_set_flag", type(of: partitionSetFlag))
        constraintExact = try sym("ped_constraint_exact", type(of: constraintExact))
        constraintDestroy = try sym("ped_constraint_destroy", type(of: constraintDestroy))
    }

    /// Loaded once, never unloaded.
    static let shared: Result<Libparted, InstallError> = {
        var why = "not found"
        for n in names {
            if let h = dlopen(n, RTLD_NOW | RTLD_LOCAL) {
                do throws(InstallError) { return .success(try Libparted(h)) } catch { return .failure(error) }
            }
            if let e = dlerror() { why = String(cString: e) }
        }
        return .failure(.parted("cannot load libparted: \(why)"))
    }()

    static func load() throws(InstallError) -> Libparted { try shared.get() }
}

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
    let lib: Libparted
    let dev: UnsafeMutablePointer<PedDevice>
    init(_ target: PlannedTarget) throws {
        lib = try Libparted.load()
        lib.exceptionSetHandler(partedHandler)
        lastPartedMessage = ""
        guard let d = lib.deviceGet(target.path) else { throw InstallError.parted("cannot open \(target.path): \(lastPartedMessage)") }
        dev = d
        guard lib.deviceOpen(dev) != 0 else {
            lib.deviceDestroy(dev)
            throw InstallError.parted("cannot open \(target.path): \(lastPartedMessage)")
        }
    }
    deinit {
        _ = lib.deviceClose(dev)
        lib.deviceDestroy(dev)
    }
    var sectorSize: Int64 { Int64(dev.pointee.sector_size) }
}

/// A libparted partition table being built.
final class PartedDisk {
    let lib: Libparted
    let disk: UnsafeMutablePointer<PedDisk>
    init(fresh device: PartedDevice, type: String) throws {
        lib = device.lib
        guard let t = lib.diskTypeGet(type), let d = lib.diskNewFresh(device.dev, t) else {
            throw InstallError.parted("cannot create a \(type) table: \(lastPartedMessage)")
        }
        disk = d
    }
    deinit { lib.diskDestroy(disk) }
}

/// Writes the installed disk's GPT through libparted.
public enum GPTWriter {
    public static func write(_ partitions: [PlannedPartition], to target: PlannedTarget) throws {
        let device = try PartedDevice(target)
        let disk = try PartedDisk(fresh: device, type: "gpt")
        let lib = device.lib
        let ss = device.sectorSize
        for p in partitions {
            let fsName: String? = switch p.role {
            case .esp: "fat32"
            case .biosBoot: nil
            default: "ext4"
            }
            let fsType = fsName.flatMap { lib.fileSystemTypeGet($0) }
            guard let part = lib.partitionNew(disk.disk, PED_PARTITION_NORMAL, fsType, p.start / ss, p.end / ss - 1) else {
                throw InstallError.parted("partition \(p.number): \(lastPartedMessage)")
            }
            guard let c = lib.constraintExact(&part.pointee.geom) else { throw InstallError.parted("constraint") }
            defer { lib.constraintDestroy(c) }
            guard lib.diskAddPartition(disk.disk, part, c) != 0 else {
                lib.partitionDestroy(part)
                throw InstallError.parted("partition \(p.number) (\(p.name)): \(lastPartedMessage)")
            }
            _ = lib.partitionSetName(part, p.name)
            switch p.role {
            case .biosBoot: _ = lib.partitionSetFlag(part, PED_PARTITION_BIOS_GRUB, 1)
            case .esp: _ = lib.partitionSetFlag(part, PED_PARTITION_ESP, 1)
            default: break
            }
        }
        guard lib.diskCommitToDev(disk.disk) != 0 else {
            throw InstallError.parted("writing the table to \(target.path): \(lastPartedMessage)")
        }
        _ = lib.deviceSync(device.dev)
    }
}
