import CDisks
import Disks
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The install target opened for writing. The only way to open a disk
/// read-write in CloudBIOS, and it takes a `PlannedTarget`, which only the
/// planner makes.
public final class TargetDevice {
    public let target: PlannedTarget
    public let fd: Int32
    /// O_DIRECT descriptor for bulk writes on block devices (-1 for files).
    public let directFD: Int32
    public let isBlockDevice: Bool

    /// Opens the planned target and, before anything is written, proves
    /// through the open descriptor that it is still the disk that was
    /// planned (device number, serial, model, size, loop backing file; an
    /// image file's inode) and that nothing mounts, holds or boots from it.
    public init(_ target: PlannedTarget, roots: DiscoveryRoots = DiscoveryRoots()) throws {
        self.target = target
        // Not O_EXCL: mke2fs and debugfs open the disk exclusively while we
        // hold it. The identity check proves nothing else claims it now.
        fd = try syscall("open \(target.path) for writing") { open(target.path, O_RDWR | O_CLOEXEC) }
        var st = stat()
        if fstat(fd, &st) != 0 { let e = currentErrno(); close(fd); throw SystemError("fstat \(target.path)", errno: e) }
        isBlockDevice = (st.st_mode & S_IFMT) == S_IFBLK
        do {
            try TargetDevice.verify(fd, isBlockDevice: isBlockDevice, against: target, roots: roots)
        } catch {
            close(fd)
            throw error
        }
        directFD = isBlockDevice ? open(target.path, O_RDWR | O_CLOEXEC | cb_disks_o_direct) : -1
        if directFD >= 0 {
            // The second descriptor must reach the same device as the first.
            var st2 = stat()
            if fstat(directFD, &st2) != 0 || st2.st_rdev != st.st_rdev {
                close(fd); close(directFD)
                throw InstallError.targetChanged("\(target.path) changed while it was being opened; nothing was written")
            }
        }
    }

    /// The checks of `init`, on an open descriptor.
    static func verify(_ fd: Int32, isBlockDevice: Bool, against t: PlannedTarget, roots: DiscoveryRoots) throws {
        func changed(_ m: String) -> InstallError { .targetChanged("\(t.path) \(m); nothing was written") }
        if t.isImageFile == isBlockDevice {
            throw changed(isBlockDevice ? "is a block device now, an image file when planned" : "is not a block device now")
        }
        let now: DiskInfo
        do { now = try Disks.identify(fd: fd, roots: roots) } catch { throw changed("cannot be identified: \(error)") }
        if isBlockDevice {
            guard let planned = t.devNumber else { throw changed("was planned without a device number") }
            let name = now.name.isEmpty ? "" : " (/dev/\(now.name))"
            if now.devNumber != planned { throw changed("opens device \(now.devNumber ?? "?")\(name) now, \(planned) when planned") }
            if now.serial != t.serial { throw changed("has serial \(now.serial ?? "none") now, \(t.serial ?? "none") when planned") }
            if now.model != t.model { throw changed("has model \(now.model ?? "none") now, \(t.model ?? "none") when planned") }
            if now.backingFile != t.backingFile {
                throw changed("is backed by \(now.backingFile ?? "nothing") now, \(t.backingFile ?? "nothing") when planned")
            }
            var s: UInt64 = 0
            try syscall("BLKGETSIZE64 \(t.path)") { cb_disks_size(fd, &s) }
            if Int64(s) != t.size { throw changed("is \(s) bytes now, \(t.size) when planned") }
        } else {
            if let planned = t.fileID, now.fileID != planned { throw changed("is another file now (inode \(now.fileID ?? "?"), \(planned) when planned)") }
            if now.size != t.size { throw changed("is \(now.size) bytes now, \(t.size) when planned") }
        }
        if let bm = now.bootMedium { throw changed("is the boot medium now (\(bm))") }
        let busy = now.allMountpoints
        if !busy.isEmpty { throw changed("is in use now: \(busy.joined(separator: ", "))") }
    }

    deinit {
        close(fd)
        if directFD >= 0 { close(directFD) }
    }

    public func currentSize() throws -> Int64 {
        if isBlockDevice {
            var s: UInt64 = 0
            try syscall("BLKGETSIZE64 \(target.path)") { cb_disks_size(fd, &s) }
            return Int64(s)
        }
        var st = stat()
        try syscall("fstat \(target.path)") { fstat(fd, &st) }
        return Int64(st.st_size)
    }

    /// Writes bytes at an offset (small, buffered writes: MBR, GPT, boot code).
    public func write(_ bytes: [UInt8], at offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = try bytes.withUnsafeBytes { p in
                try syscall("write \(target.path) at \(offset + Int64(done))") {
                    pwrite(fd, p.baseAddress! + done, p.count - done, off_t(offset) + off_t(done))
                }
            }
            done += n
        }
    }

    public func read(_ count: Int, at offset: Int64) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = try buf.withUnsafeMutableBytes { p in
                try syscall("read \(target.path)") { pread(fd, p.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            }
            if n == 0 { break }
            done += n
        }
        return buf
    }

    /// Makes a range read as zeros: a hole in a file, WRITE ZEROES on a
    /// device (falls back to writing zeros).
    public func zero(_ offset: Int64, _ length: Int64) throws {
        guard length > 0 else { return }
        if isBlockDevice {
            if cb_disks_zeroout(fd, UInt64(offset), UInt64(length)) == 0 { return }
        } else {
            if cb_disks_punch_hole(fd, offset, length) == 0 { return }
        }
        let chunk = 1 << 20
        let zeros = [UInt8](repeating: 0, count: chunk)
        var at = offset
        while at < offset + length {
            let n = Int(min(Int64(chunk), offset + length - at))
            try write(n == chunk ? zeros : Array(zeros[0..<n]), at: at)
            at += Int64(n)
        }
    }

    public func sync() throws {
        try syscall("fsync \(target.path)") { fsync(fd) }
        if directFD >= 0 { _ = fsync(directFD) }
    }

    /// Flushes and has the kernel re-read the partition table (block devices).
    public func rereadPartitions() throws {
        try sync()
        guard isBlockDevice else { return }
        _ = cb_disks_flush_buffers(fd)
        var tries = 0
        while cb_disks_reread_partitions(fd) != 0 {
            let e = currentErrno()
            // Loop devices without partition scanning have no table to re-read.
            if e == EINVAL { Log.info("\(target.path) does not scan partitions; nothing to re-read"); return }
            tries += 1
            if e != EBUSY || tries > 10 { throw SystemError("re-read the partition table of \(target.path)", errno: e) }
            usleep(200_000)
        }
    }
}

public enum InstallError: Error, Sendable, CustomStringConvertible {
    case targetChanged(String)
    case missingSource(String)
    case tool(String, Int32, String)
    case parted(String)
    case bootloader(String)
    case failed(String)

    public var description: String {
        switch self {
        case .targetChanged(let m): "the target changed since it was planned: \(m)"
        case .missingSource(let m): m
        case .tool(let cmd, let rc, let out): "\(cmd) failed (exit \(rc)): \(out.split(separator: "\n").suffix(5).joined(separator: " / "))"
        case .parted(let m): "partitioning failed: \(m)"
        case .bootloader(let m): "GRUB: \(m)"
        case .failed(let m): m
        }
    }
}
