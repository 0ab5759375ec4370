import CShims
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Writes an image file into a range of the target, fast: data extents
/// only (SEEK_DATA/SEEK_HOLE; holes and all-zero chunks become holes or
/// WRITE ZEROES), large aligned writes, O_DIRECT on block devices.
public struct ImageWriter {
    public static let chunk = 8 << 20

    public struct Stats: Sendable, Equatable {
        public var dataBytes: Int64 = 0
        public var zeroedBytes: Int64 = 0
    }

    /// Copies `source` to `target` at `offset`. The range [offset, offset +
    /// image size) of the target afterwards equals the image byte for byte.
    /// - Parameter deferHead: this many leading bytes are written last,
    ///   after everything else is on disk (a filesystem's superblock as the
    ///   commit record).
    @discardableResult
    public static func write(_ source: String, to t: TargetDevice, at offset: Int64, deferHead: Int64 = 0,
                             progress: (Int64, Int64) -> Void = { _, _ in }) throws -> Stats {
        let src = try syscall("open \(source)") { open(source, O_RDONLY | O_CLOEXEC) }
        defer { close(src) }
        var st = stat()
        try syscall("fstat \(source)") { fstat(src, &st) }
        let size = Int64(st.st_size)
        _ = posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL)
        guard let buf = cb_disks_aligned_alloc(4096, UInt64(chunk)) else { throw SystemError("alloc", errno: ENOMEM) }
        defer { free(buf) }
        var stats = Stats()
        let head = min(deferHead, size)
        var pos: Int64 = head
        // Data and holes after the deferred head.
        while pos < size {
            var data = lseek(src, off_t(pos), cb_disks_seek_data)
            if data < 0 { data = off_t(size) }  // ENXIO: only a hole remains
            if Int64(data) > pos {
                try t.zero(offset + pos, Int64(data) - pos)
                stats.zeroedBytes += Int64(data) - pos
            }
            pos = Int64(data)
            if pos >= size { break }
            var hole = Int64(lseek(src, off_t(pos), cb_disks_seek_hole))
            if hole < 0 || hole > size { hole = size }
            try copy(src, from: pos, count: hole - pos, to: t, at: offset + pos, buf: buf, stats: &stats)
            pos = hole
            progress(pos, size)
        }
        if head > 0 {
            try t.sync()
            try copy(src, from: 0, count: head, to: t, at: offset, buf: buf, stats: &stats)
        }
        try t.sync()
        progress(size, size)
        return stats
    }

    /// Copies a data extent through one aligned buffer: a read, then one
    /// large write (O_DIRECT on devices); all-zero chunks become zeroed ranges.
    static func copy(_ src: Int32, from: Int64, count: Int64, to t: TargetDevice, at: Int64,
                     buf: UnsafeMutableRawPointer, stats: inout Stats) throws {
        var done: Int64 = 0
        while done < count {
            let want = Int(min(Int64(chunk), count - done))
            var got = 0
            while got < want {
                let n = try syscall("read image") { pread(src, buf + got, want - got, off_t(from + done + Int64(got))) }
                if n == 0 { break }
                got += n
            }
            if got == 0 { throw SystemError("read image: unexpected end", errno: EIO) }
            if isZero(buf, got) {
                try t.zero(at + done, Int64(got))
                stats.zeroedBytes += Int64(got)
            } else {
                try writeChunk(t, buf, got, at: at + done)
                stats.dataBytes += Int64(got)
            }
            done += Int64(got)
        }
    }

    static func writeChunk(_ t: TargetDevice, _ buf: UnsafeMutableRawPointer, _ n: Int, at: Int64) throws {
        // O_DIRECT needs 4 KiB-aligned offsets and lengths; anything else
        // (the tail of an odd-sized image) goes through the buffered fd.
        let direct = t.directFD >= 0 && at % 4096 == 0 && n % 4096 == 0
        let fd = direct ? t.directFD : t.fd
        var done = 0
        while done < n {
            let w = try syscall("write \(t.target.path)") { pwrite(fd, buf + done, n - done, off_t(at) + off_t(done)) }
            done += w
        }
    }

    /// 64 KiB of zeros to compare against (memcmp is fast in any build).
    nonisolated(unsafe) static let zeroPage: UnsafeMutableRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 4096)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: 65536)
        return p
    }()

    static func isZero(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        var off = 0
        while off < n {
            let len = min(65536, n - off)
            if memcmp(p + off, zeroPage, len) != 0 { return false }
            off += len
        }
        return true
    }
}
