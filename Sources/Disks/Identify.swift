import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

extension Disks {
    /// What an open descriptor refers to now, read through the descriptor
    /// itself (fstat: the device number or the file's inode), not through a
    /// path that may have been re-pointed since: the sysfs facts (size,
    /// serial, model, loop backing file), every mount of the disk and its
    /// partitions, anything holding it (device mapper, md, an exclusive
    /// opener), and whether it is the boot medium (the device PID 1 names
    /// or the one holding the boot medium's mount, or a disk PID 1's
    /// `BootMediumIdentity` recognises). The contents are probed only for
    /// that last check, when PID 1 wrote an identity; the rest is the
    /// planner's business, and costs a libblkid pass.
    public static func identify(fd: Int32, roots: DiscoveryRoots = DiscoveryRoots()) throws(DiskError) -> DiskInfo {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DiskError.notFound("fd \(fd)", String(cString: strerror(currentErrno()))) }
        let mounts = MountTable(path: roots.mountinfo)
        switch st.st_mode & S_IFMT {
        case S_IFBLK:
            let mm = "\(major(st.st_rdev)):\(minor(st.st_rdev))"
            guard let name = sysfsName(forDev: mm, roots: roots) else { throw DiskError.notFound("device \(mm)", "no sysfs entry") }
            if Files.exists("\(roots.sys)/class/block/\(name)/partition") { throw DiskError.isPartition("/dev/\(name)") }
            guard var d = sysfsDisk(name, roots: roots) else { throw DiskError.notFound("/dev/\(name)", "no size in sysfs") }
            d.devNumber = mm
            d.mountpoints = mounts.mountpoints(mm)
            for p in partitionNames(name, roots: roots) {
                var pi = PartitionInfo(number: attr(roots, name, "\(p)/partition").flatMap { Int($0) } ?? 0, start: 0, size: 0)
                pi.path = "\(roots.dev)/\(p)"
                pi.mountpoints = mounts.mountpoints(attr(roots, name, "\(p)/dev") ?? "")
                pi.mountpoints += holders("\(roots.sys)/block/\(name)/\(p)/holders").map { "(held by \($0))" }
                d.partitions.append(pi)
            }
            d.mountpoints += holders("\(roots.sys)/block/\(name)/holders").map { "(held by \($0))" }
            if !Self.exclusivelyFree(fd) { d.mountpoints.append("(opened exclusively by another program)") }
            if let boot = bootDiskName(roots: roots, mounts: mounts), boot.name == name { d.bootMedium = boot.reason }
            if d.bootMedium == nil, let id = BootMediumIdentity.read(roots.bootIdentityFile) {
                d.bootMedium = id.match(d)
                if d.bootMedium == nil, d.size > 0, let c = try? Probe.contents(of: "/proc/self/fd/\(fd)", size: d.size) {
                    var probed = d
                    probed.filesystem = c.filesystem
                    probed.partitions = c.partitions
                    d.bootMedium = id.match(probed)
                }
            }
            return d
        case S_IFREG:
            var d = DiskInfo(name: "", path: "", size: Int64(st.st_size), transport: .file)
            d.fileID = "\(st.st_dev):\(st.st_ino)"
            for loop in Files.list(roots.sys + "/block") where loop.hasPrefix("loop") {
                guard let bf = Files.readTrimmed("\(roots.sys)/block/\(loop)/loop/backing_file") else { continue }
                var bst = stat()
                guard stat(bf, &bst) == 0, bst.st_dev == st.st_dev, bst.st_ino == st.st_ino else { continue }
                d.mountpoints.append("(attached to /dev/\(loop))")
            }
            if let bm = mounts.source(of: roots.bootMediumMount) {
                var bst = stat()
                if stat(bm, &bst) == 0, bst.st_dev == st.st_dev, bst.st_ino == st.st_ino {
                    d.bootMedium = "mounted at \(roots.bootMediumMount)"
                }
            }
            return d
        default:
            throw DiskError.notFound("fd \(fd)", "not a block device or a regular file")
        }
    }

    static func holders(_ dir: String) -> [String] { Files.list(dir).filter { !$0.hasPrefix(".") } }

    /// True when nothing else holds the block device open exclusively
    /// (a mount, device mapper, md, another installer): an O_EXCL open of
    /// the very device behind `fd` succeeds.
    static func exclusivelyFree(_ fd: Int32) -> Bool {
        let e = open("/proc/self/fd/\(fd)", O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK)
        if e < 0 { return currentErrno() != EBUSY }
        close(e)
        return true
    }
}
