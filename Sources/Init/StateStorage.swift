#if canImport(Glibc)
import Glibc
#endif
import Config
import Disks
import Install
import Platform

/// Where the state directory lives (RAM, a `CB-DATA` partition, an
/// installed system's data partition), and the move of a state held in
/// RAM onto a data partition made while the machine runs.
public enum StateStorage {
    /// What holds `dir` now, from the mount table and the filesystem's label.
    public static func describe(_ dir: String, table: [Mount.Entry] = Mount.table(),
                                label: (String) -> String? = { Probe.filesystem(of: $0)?.label },
                                installed: (String) -> Bool = StateStorage.besideInstalledSystem) -> HostStorage {
        let m = Mount.containing(dir, table: table)
        var s: HostStorage
        if m == nil || ["tmpfs", "ramfs", "rootfs"].contains(m!.type) {
            s = HostStorage(kind: .ram, path: dir,
                            note: "VMs, images and disks live in RAM: they are gone at the next boot. Make a data disk (CB-DATA) on the disks page to keep them.")
        } else if m!.source.hasPrefix("/dev/"), label(m!.source) == Layout.dataLabel {
            if installed(m!.source) {
                s = HostStorage(kind: .installed, path: dir, note: "on the installed system's data partition \(m!.source)")
            } else {
                s = HostStorage(kind: .dataPartition, path: dir, note: "on the data partition \(m!.source) (CB-DATA)")
            }
            s.label = Layout.dataLabel
        } else {
            s = HostStorage(kind: .directory, path: dir, note: "in \(dir) (\(m!.type) on \(m!.source))")
        }
        s.device = m.map(\.source)
        s.filesystem = m.map(\.type)
        var st = statvfs()
        if statvfs(dir, &st) == 0 {
            s.sizeBytes = Int64(st.f_blocks) * Int64(st.f_frsize)
            s.freeBytes = Int64(st.f_bavail) * Int64(st.f_frsize)
        }
        return s
    }

    /// Whether the partition `device` is on a disk that also holds the
    /// installed system (`CB-SYSTEM`).
    public static func besideInstalledSystem(_ device: String) -> Bool {
        let disk = Disks.wholeDiskDevice(device)
        guard disk != device, let d = try? Disks.inspect(path: disk) else { return false }
        return d.partitions.contains { $0.filesystem?.label == Layout.systemLabel }
    }

    /// Moves the state directory `dir`, held in RAM, onto the filesystem
    /// on `device`: mounted beside it, every file copied (sparse files stay
    /// sparse; sockets and pipes, which belong to this boot, are left), and
    /// then mounted on `dir` in place of the RAM one, which is let go. The
    /// paths stay the same, so whoever keeps them sees the data partition
    /// from then on. On an error before that, nothing has changed in `dir`.
    public static func moveIntoPlace(_ dir: String, device: String, type: String = "ext4", log: (String) -> Void) throws {
        guard Mount.isVolatile(dir) else { throw InitError("\(dir) is not in RAM; nothing to move") }
        let staging = "/run/cloudbios/state-new"
        try Files.makeDirectories(staging)
        try Mount.mount(device, on: staging, type: type, flags: UInt(MS_NOATIME))
        do {
            let n = try copyTree(dir, to: staging)
            log("storage: \(n) files copied from RAM to \(device)")
        } catch {
            try? Mount.unmount(staging)
            throw error
        }
        try Mount.unmount(staging)
        // the RAM copy steps aside, and goes once the partition is in its
        // place (its open files stay readable to whoever holds them)
        let old = "/run/cloudbios/state-ram"
        let ramMounted = Mount.containing(dir)?.target == dir
        if ramMounted {
            try Files.makeDirectories(old)
            try syscall("move \(dir) to \(old)") { mount(dir, old, nil, UInt(MS_MOVE), nil) }
        }
        do {
            try Mount.mount(device, on: dir, type: type, flags: UInt(MS_NOATIME))
        } catch {
            if ramMounted { _ = mount(old, dir, nil, UInt(MS_MOVE), nil) }
            throw error
        }
        if ramMounted { try? Mount.unmount(old, lazy: true) }
        log("storage: \(device) mounted at \(dir); the state lasts from now on")
    }

    /// Copies the tree `from` into `to`: directories, regular files (holes
    /// kept, modes kept) and symbolic links. The number of files copied.
    @discardableResult
    public static func copyTree(_ from: String, to: String) throws -> Int {
        var count = 0
        var st = stat()
        try syscall("stat \(from)") { lstat(from, &st) }
        _ = chmod(to, st.st_mode & 0o7777)
        for name in Files.list(from) {
            let src = from + "/" + name, dst = to + "/" + name
            var s = stat()
            guard lstat(src, &s) == 0 else { continue }
            switch s.st_mode & S_IFMT {
            case S_IFDIR:
                if !Files.isDirectory(dst) { try syscall("mkdir \(dst)") { mkdir(dst, 0o755) } }
                count += try copyTree(src, to: dst)
            case S_IFREG:
                try copySparse(src, to: dst, mode: s.st_mode & 0o7777)
                count += 1
            case S_IFLNK:
                if let target = Files.readLink(src) { unlink(dst); try syscall("symlink \(dst)") { symlink(target, dst) } }
            default:
                continue
            }
        }
        return count
    }

    /// Copies one file; blocks of zeros become holes.
    static func copySparse(_ from: String, to: String, mode: mode_t) throws {
        let i = try FileDescriptor.open(from, O_RDONLY)
        defer { i.close() }
        let o = try FileDescriptor.open(to, O_WRONLY | O_CREAT | O_TRUNC, mode: mode, what: "create \(to)")
        defer { o.close() }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var size: Int64 = 0
        while true {
            let n = try buf.withUnsafeMutableBytes { try i.read(into: $0, what: "read \(from)") }
            if n == 0 { break }
            // 64 KiB pieces: one of zeros is a hole
            var at = 0
            while at < n {
                let end = min(n, at + 65536)
                if buf[at..<end].contains(where: { $0 != 0 }) {
                    _ = try syscall("seek \(to)") { lseek(o.rawValue, off_t(size + Int64(at)), SEEK_SET) }
                    try buf.withUnsafeBytes { try o.writeAll(UnsafeRawBufferPointer(rebasing: $0[at..<end]), what: "write \(to)") }
                }
                at = end
            }
            size += Int64(n)
        }
        try syscall("truncate \(to)") { ftruncate(o.rawValue, off_t(size)) }
        _ = fchmod(o.rawValue, mode)
    }
}
