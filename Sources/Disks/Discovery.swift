import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Where discovery looks. Tests point these at fake trees.
public struct DiscoveryRoots: Sendable {
    public var sys = "/sys"
    public var dev = "/dev"
    public var mountinfo = "/proc/self/mountinfo"
    /// Written by PID 1 when it knows the device it booted from.
    public var bootDeviceFile = "/run/cloudbios/boot-device"
    /// Where PID 1 mounts the boot medium.
    public var bootMediumMount = "/run/cloudbios/boot-medium"
    /// What the boot medium is (`BootMediumIdentity`), written by PID 1.
    public var bootIdentityFile = "/run/cloudbios/boot-medium.id"
    public init() {}
}

/// Block device discovery: sysfs for the hardware facts, libblkid for the
/// contents. Read-only: nothing here opens a device for writing.
public enum Disks {
    /// The ISO volume label of CloudBIOS boot media.
    public static let bootVolumeLabel = "CLOUDBIOS"

    /// Every disk on this machine, sorted by name. RAM disks, zram, device
    /// mapper and md devices, and loop devices without a backing file are
    /// skipped.
    public static func list(roots: DiscoveryRoots = DiscoveryRoots()) -> [DiskInfo] {
        let mounts = MountTable(path: roots.mountinfo)
        let byID = byIDLinks(roots: roots)
        let bootDisk = bootDiskName(roots: roots, mounts: mounts)
        let identity = BootMediumIdentity.read(roots.bootIdentityFile)
        var disks: [DiskInfo] = []
        for name in Files.list(roots.sys + "/block") where !skipped(name, roots: roots) {
            guard var d = sysfsDisk(name, roots: roots) else { continue }
            fill(&d, mounts: mounts, byID: byID, roots: roots)
            if bootDisk?.name == name { d.bootMedium = bootDisk?.reason }
            markBootVolume(&d)
            if d.bootMedium == nil, let why = identity?.match(d) { d.bootMedium = why }
            disks.append(d)
        }
        return disks
    }

    /// One disk by path: a block device node (a whole disk) or a disk image file.
    public static func inspect(path: String, roots: DiscoveryRoots = DiscoveryRoots()) throws(DiskError) -> DiskInfo {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw DiskError.notFound(path, String(cString: strerror(currentErrno())))
        }
        switch st.st_mode & S_IFMT {
        case S_IFBLK:
            let mm = "\(major(st.st_rdev)):\(minor(st.st_rdev))"
            guard let name = sysfsName(forDev: mm, roots: roots) else { throw DiskError.notFound(path, "no sysfs entry for \(mm)") }
            if Files.exists("\(roots.sys)/class/block/\(name)/partition") {
                throw DiskError.isPartition(path)
            }
            // Only this disk: no probing of every other disk on the machine.
            guard !skipped(name, roots: roots), var d = sysfsDisk(name, roots: roots) else {
                throw DiskError.notFound(path, "not a usable disk")
            }
            let mounts = MountTable(path: roots.mountinfo)
            fill(&d, mounts: mounts, byID: byIDLinks(roots: roots), roots: roots)
            if let boot = bootDiskName(roots: roots, mounts: mounts), boot.name == name { d.bootMedium = boot.reason }
            markBootVolume(&d)
            return d
        case S_IFREG:
            let mounts = MountTable(path: roots.mountinfo)
            var d = DiskInfo(name: Files.basename(path), path: path, size: Int64(st.st_size), transport: .file)
            d.readOnly = access(path, W_OK) != 0
            d.fileID = "\(st.st_dev):\(st.st_ino)"
            if let c = try? Probe.contents(of: path, size: d.size) {
                d.partitionTable = c.partitionTable; d.partitions = c.partitions; d.filesystem = c.filesystem
                d.cloudbiosInstalled = isInstalled(d)
            }
            // An image file backing a mounted loop device is in use.
            for loop in Files.list(roots.sys + "/block") where loop.hasPrefix("loop") {
                guard let bf = Files.readTrimmed("\(roots.sys)/block/\(loop)/loop/backing_file"),
                      sameFile(bf, path) else { continue }
                let dev = Files.readTrimmed("\(roots.sys)/block/\(loop)/dev") ?? ""
                d.mountpoints += mounts.mountpoints(dev)
                for p in partitionNames(loop, roots: roots) {
                    d.mountpoints += mounts.mountpoints(Files.readTrimmed("\(roots.sys)/block/\(loop)/\(p)/dev") ?? "")
                }
                if d.mountpoints.isEmpty { d.mountpoints.append("(attached to /dev/\(loop))") }
            }
            if let bm = mounts.source(of: roots.bootMediumMount), sameFile(bm, path) {
                d.bootMedium = "mounted at \(roots.bootMediumMount)"
            }
            markBootVolume(&d)
            return d
        default:
            throw DiskError.notFound(path, "not a block device or a regular file")
        }
    }

    // MARK: sysfs

    static func skipped(_ name: String, roots: DiscoveryRoots) -> Bool {
        for p in ["ram", "zram", "dm-", "md", "nbd", "fd"] where name.hasPrefix(p) { return true }
        if name.hasPrefix("loop") {
            return Files.readTrimmed("\(roots.sys)/block/\(name)/loop/backing_file") == nil
        }
        if name.hasPrefix("sr") || name.hasPrefix("vd") || name.hasPrefix("sd") || name.hasPrefix("nvme") || name.hasPrefix("mmcblk") || name.hasPrefix("xvd") || name.hasPrefix("hd") {
            return Files.readTrimmed("\(roots.sys)/block/\(name)/size") == "0" && !name.hasPrefix("sr")
        }
        return false
    }

    static func attr(_ roots: DiscoveryRoots, _ name: String, _ rel: String) -> String? {
        guard let s = Files.readTrimmed("\(roots.sys)/block/\(name)/\(rel)"), !s.isEmpty else { return nil }
        return s
    }

    static func sysfsDisk(_ name: String, roots: DiscoveryRoots) -> DiskInfo? {
        guard let sectors = attr(roots, name, "size").flatMap({ Int64($0) }) else { return nil }
        let link = readLink("\(roots.sys)/block/\(name)") ?? ""
        let transport = transportOf(name: name, sysPath: link)
        var d = DiskInfo(name: name, path: "\(roots.dev)/\(name)", size: sectors * 512, transport: transport)
        d.model = attr(roots, name, "device/model").map(clean)
        d.serial = (attr(roots, name, "serial") ?? attr(roots, name, "device/serial")).map(clean)
            ?? vpdSerial(Files.readBytes("\(roots.sys)/block/\(name)/device/vpd_pg80"))
        if d.model == nil, let vendor = attr(roots, name, "device/vendor"), !vendor.hasPrefix("0x") { d.model = clean(vendor) }
        d.rotational = attr(roots, name, "queue/rotational") == "1"
        d.removable = attr(roots, name, "removable") == "1"
        d.readOnly = attr(roots, name, "ro") == "1"
        d.backingFile = attr(roots, name, "loop/backing_file")
        d.devNumber = attr(roots, name, "dev")
        if d.model == nil, transport == .loop { d.model = "loop" }
        return d
    }

    static func transportOf(name: String, sysPath: String) -> Transport {
        if name.hasPrefix("loop") { return .loop }
        if name.hasPrefix("nvme") || sysPath.contains("/nvme") { return .nvme }
        if name.hasPrefix("mmcblk") { return .mmc }
        if sysPath.contains("/usb") { return .usb }
        if name.hasPrefix("vd") { return .virtio }
        if sysPath.contains("/ata") { return .sata }
        if name.hasPrefix("sd") || name.hasPrefix("sr") { return .scsi }
        return .unknown
    }

    /// SCSI VPD page 0x80 (unit serial number): 4-byte header, then ASCII.
    static func vpdSerial(_ bytes: [UInt8]?) -> String? {
        guard let b = bytes, b.count > 4 else { return nil }
        let len = min(Int(b[3]), b.count - 4)
        let s = clean(String(decoding: b[4..<(4 + len)], as: UTF8.self))
        return s.isEmpty ? nil : s
    }

    static func clean(_ s: String) -> String {
        String(s.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }.map(Character.init))
            .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    static func partitionNames(_ name: String, roots: DiscoveryRoots) -> [String] {
        Files.list("\(roots.sys)/block/\(name)").filter {
            $0.hasPrefix(name) && Files.exists("\(roots.sys)/block/\(name)/\($0)/partition")
        }
    }

    static func fill(_ d: inout DiskInfo, mounts: MountTable, byID: [String: String], roots: DiscoveryRoots) {
        let name = d.name
        // Partitions as the kernel sees them.
        var kernelParts: [PartitionInfo] = []
        for p in partitionNames(name, roots: roots) {
            guard let num = attr(roots, name, "\(p)/partition").flatMap({ Int($0) }),
                  let start = attr(roots, name, "\(p)/start").flatMap({ Int64($0) }),
                  let size = attr(roots, name, "\(p)/size").flatMap({ Int64($0) }) else { continue }
            var pi = PartitionInfo(number: num, start: start * 512, size: size * 512)
            pi.path = "\(roots.dev)/\(p)"
            pi.mountpoints = mounts.mountpoints(attr(roots, name, "\(p)/dev") ?? "")
            kernelParts.append(pi)
        }
        kernelParts.sort { $0.number < $1.number }
        d.mountpoints = mounts.mountpoints(attr(roots, name, "dev") ?? "")
        // Contents as the disk holds them (may be newer than the kernel's view).
        if d.size > 0, let c = try? Probe.contents(of: d.path, size: d.size) {
            d.partitionTable = c.partitionTable
            d.filesystem = c.filesystem
            var parts = c.partitions
            for i in parts.indices {
                if let k = kernelParts.first(where: { $0.number == parts[i].number }) {
                    parts[i].path = k.path; parts[i].mountpoints = k.mountpoints
                }
            }
            for k in kernelParts where !parts.contains(where: { $0.number == k.number }) { parts.append(k) }
            d.partitions = parts.sorted { $0.number < $1.number }
        } else {
            d.partitions = kernelParts
        }
        d.byID = byID[name] ?? synthesizedByID(d)
        d.cloudbiosInstalled = isInstalled(d)
    }

    /// A disk CloudBIOS was installed on has its system partition (label
    /// CB-SYSTEM, the installer's `Layout.systemLabel`).
    static func isInstalled(_ d: DiskInfo) -> Bool {
        d.partitions.contains { $0.filesystem?.label == "CB-SYSTEM" }
    }

    /// The by-id name udev would create: `virtio-SERIAL`, `ata-MODEL_SERIAL`, …
    public static func synthesizedByID(_ d: DiskInfo) -> String? {
        guard let serial = d.serial, !serial.isEmpty else { return nil }
        func u(_ s: String) -> String { String(s.map { $0 == " " ? "_" : $0 }) }
        let model = d.model.map(u)
        let id: String
        switch d.transport {
        case .virtio: id = "virtio-\(u(serial))"
        case .sata: id = "ata-\(model.map { $0 + "_" } ?? "")\(u(serial))"
        case .nvme: id = "nvme-\(model.map { $0 + "_" } ?? "")\(u(serial))"
        case .usb: id = "usb-\(model.map { $0 + "_" } ?? "")\(u(serial))"
        case .mmc: id = "mmc-\(model.map { $0 + "_" } ?? "")\(u(serial))"
        default: id = "scsi-\(model.map { $0 + "_" } ?? "")\(u(serial))"
        }
        return "/dev/disk/by-id/\(id)"
    }

    /// `/dev/disk/by-id` links to whole disks, preferring transport names
    /// over `wwn-`.
    static func byIDLinks(roots: DiscoveryRoots) -> [String: String] {
        let dir = roots.dev + "/disk/by-id"
        var out: [String: String] = [:]
        for e in Files.list(dir) where !e.contains("-part") {
            guard let target = readLink(dir + "/" + e) else { continue }
            let name = Files.basename(target)
            if let existing = out[name], !Files.basename(existing).hasPrefix("wwn-") { continue }
            out[name] = dir + "/" + e
        }
        return out
    }

    // MARK: boot medium

    /// The disk CloudBIOS booted from, and why we think so.
    static func bootDiskName(roots: DiscoveryRoots, mounts: MountTable) -> (name: String, reason: String)? {
        if let dev = Files.readTrimmed(roots.bootDeviceFile), !dev.isEmpty {
            var st = stat()
            if stat(dev, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK,
               let n = sysfsName(forDev: "\(major(st.st_rdev)):\(minor(st.st_rdev))", roots: roots) {
                return (wholeDisk(n, roots: roots), "\(roots.bootDeviceFile) names \(dev)")
            }
        }
        if let mm = mounts.device(of: roots.bootMediumMount), let n = sysfsName(forDev: mm, roots: roots) {
            return (wholeDisk(n, roots: roots), "holds \(roots.bootMediumMount)")
        }
        return nil
    }

    /// An ISO (or partition) labelled CLOUDBIOS is a CloudBIOS boot medium.
    static func markBootVolume(_ d: inout DiskInfo) {
        guard d.bootMedium == nil else { return }
        if let fs = d.filesystem, fs.label == bootVolumeLabel {
            d.bootMedium = "\(fs.type) volume labelled \(bootVolumeLabel)"
        } else if let p = d.partitions.first(where: { $0.filesystem?.label == bootVolumeLabel && $0.filesystem?.type == "iso9660" }) {
            d.bootMedium = "partition \(p.number) is an iso9660 volume labelled \(bootVolumeLabel)"
        }
    }

    static func sysfsName(forDev mm: String, roots: DiscoveryRoots) -> String? {
        guard let link = readLink("\(roots.sys)/dev/block/\(mm)") else { return nil }
        return Files.basename(link)
    }

    /// The whole disk's device path for a partition's (`/dev/sda` for
    /// `/dev/sda1`; a whole disk's is itself).
    public static func wholeDiskDevice(_ dev: String, roots: DiscoveryRoots = DiscoveryRoots()) -> String {
        roots.dev + "/" + wholeDisk(Files.basename(dev), roots: roots)
    }

    static func wholeDisk(_ name: String, roots: DiscoveryRoots) -> String {
        guard Files.exists("\(roots.sys)/class/block/\(name)/partition"),
              let link = readLink("\(roots.sys)/class/block/\(name)") else { return name }
        return Files.basename(Files.parent(of: link))
    }

    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let s = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasPrefix("/") { return s }
        return Files.parent(of: path) + "/" + s
    }

    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}

/// `/proc/self/mountinfo`: mount points by device number.
struct MountTable {
    struct Entry { var dev: String; var mountpoint: String; var source: String }
    var entries: [Entry] = []

    init(path: String) {
        guard let text = try? Files.readString(path) else { return }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 10, let dash = f.firstIndex(of: "-"), dash + 2 < f.count else { continue }
            entries.append(Entry(dev: String(f[2]), mountpoint: MountTable.unescape(String(f[4])), source: MountTable.unescape(String(f[dash + 2]))))
        }
    }

    func mountpoints(_ dev: String) -> [String] {
        guard !dev.isEmpty else { return [] }
        return entries.filter { $0.dev == dev }.map(\.mountpoint)
    }
    func device(of mountpoint: String) -> String? { entries.last { $0.mountpoint == mountpoint }?.dev }
    func source(of mountpoint: String) -> String? { entries.last { $0.mountpoint == mountpoint }?.source }

    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else { out.append(b[i]); i += 1 }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

public enum DiskError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(String, String)
    case isPartition(String)

    public var description: String {
        switch self {
        case .notFound(let p, let why): "\(p): \(why)"
        case .isPartition(let p): "\(p) is a partition; name the whole disk"
        }
    }
}

extension Files {
    static func basename(_ path: String) -> String {
        guard let i = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: i)...])
    }
    static func readBytes(_ path: String) -> [UInt8]? { try? read(path, limit: 4096) }
}

func major(_ dev: dev_t) -> UInt64 { let d = UInt64(dev); return ((d >> 8) & 0xfff) | ((d >> 32) & ~UInt64(0xfff)) }
func minor(_ dev: dev_t) -> UInt64 { let d = UInt64(dev); return (d & 0xff) | ((d >> 12) & ~UInt64(0xff)) }
