import CDisks
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
        // Data is written straight from a read-only mapping of the image
        // (the kernel reads the page cache for the O_DIRECT write: no copy
        // through a buffer first); `buf` bounces what cannot go direct.
        var reader = Reader(fd: src, size: size, bounce: buf)
        defer { reader.unmap() }
        var stats = Stats()
        let head = min(deferHead, size)
        // The map of the image after the deferred head: its data extents
        // and its holes (SEEK_DATA/SEEK_HOLE).
        var extents: [(Int64, Int64)] = []
        var holes: [(Int64, Int64)] = []
        var pos: Int64 = head
        while pos < size {
            var data = Int64(lseek(src, off_t(pos), cb_disks_seek_data))
            if data < 0 || data > size { data = size }  // ENXIO: only a hole remains
            if data > pos { holes.append((pos, data - pos)) }
            pos = data
            if pos >= size { break }
            var hole = Int64(lseek(src, off_t(pos), cb_disks_seek_hole))
            if hole < 0 || hole > size { hole = size }
            extents.append((pos, hole - pos))
            pos = hole
        }
        // Holes are zeroed (WRITE ZEROES / punched) on a second thread while
        // this one writes the data: the ranges are disjoint, and the device
        // works on both at once.
        let zeroing = HoleZeroing(target: t, offset: offset, holes: holes)
        zeroing.start()
        var copyError: (any Error)?
        do {
            for (start, count) in extents {
                try copy(&reader, from: start, count: count, to: t, at: offset + start, stats: &stats)
                progress(start + count, size)
            }
        } catch { copyError = error }
        zeroing.join()
        if let copyError { throw copyError }
        if let e = zeroing.error { throw e }
        stats.zeroedBytes += zeroing.zeroed
        if head > 0 {
            try t.sync()
            try copy(&reader, from: 0, count: head, to: t, at: offset, stats: &stats)
        }
        try t.sync()
        progress(size, size)
        return stats
    }

    /// Zeroes the holes of an image on a thread of its own.
    final class HoleZeroing: @unchecked Sendable {
        let target: TargetDevice
        let offset: Int64
        let holes: [(Int64, Int64)]
        private(set) var zeroed: Int64 = 0
        private(set) var error: (any Error)?
        private var thread: pthread_t?

        init(target: TargetDevice, offset: Int64, holes: [(Int64, Int64)]) {
            self.target = target
            self.offset = offset
            self.holes = holes
        }

        /// Starts the thread (or, if none can be started, zeroes right here).
        func start() {
            guard !holes.isEmpty else { return }
            var tid = pthread_t()
            let arg = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                let job = Unmanaged<HoleZeroing>.fromOpaque(arg!).takeRetainedValue()
                job.run()
                return nil
            }, arg)
            if rc == 0 {
                thread = tid
            } else {
                Unmanaged<HoleZeroing>.fromOpaque(arg).release()
                run()
            }
        }

        func join() {
            if let thread { pthread_join(thread, nil) }
            thread = nil
        }

        private func run() {
            do {
                for (start, count) in holes {
                    try target.zero(offset + start, count)
                    zeroed += count
                }
            } catch {
                self.error = error
            }
        }
    }

    /// The image's bytes: a read-only mapping of the whole file when the
    /// kernel grants one, reads into the aligned bounce buffer otherwise.
    /// (Images are not changed while they are written: a mapped file cut
    /// short under the writer would fault rather than read short.)
    struct Reader {
        let fd: Int32
        let size: Int64
        let bounce: UnsafeMutableRawPointer
        private(set) var map: UnsafeMutableRawPointer?

        init(fd: Int32, size: Int64, bounce: UnsafeMutableRawPointer) {
            self.fd = fd
            self.size = size
            self.bounce = bounce
            map = nil
            if size > 0, let m = mmap(nil, Int(size), PROT_READ, MAP_SHARED, fd, 0), m != MAP_FAILED {
                _ = madvise(m, Int(size), MADV_SEQUENTIAL)
                map = m
            }
        }

        /// `count` (≤ `chunk`) bytes of the image from `at`, or fewer at its end.
        mutating func bytes(at: Int64, count: Int) throws -> (UnsafeMutableRawPointer, Int) {
            if let map {
                return (map + Int(at), Int(min(Int64(count), max(0, size - at))))
            }
            var got = 0
            while got < count {
                let n = try syscall("read image") { pread(fd, bounce + got, count - got, off_t(at + Int64(got))) }
                if n == 0 { break }
                got += n
            }
            return (bounce, got)
        }

        mutating func unmap() {
            if let m = map { munmap(m, Int(size)); map = nil }
        }
    }

    /// Copies a data extent in chunks of at most `chunk` bytes, each one
    /// large write (O_DIRECT on devices); all-zero chunks become zeroed ranges.
    static func copy(_ r: inout Reader, from: Int64, count: Int64, to t: TargetDevice, at: Int64,
                     stats: inout Stats) throws {
        var done: Int64 = 0
        while done < count {
            let want = Int(min(Int64(chunk), count - done))
            let (p, got) = try r.bytes(at: from + done, count: want)
            if got == 0 { throw SystemError("read image: unexpected end", errno: EIO) }
            if isZero(p, got) {
                try t.zero(at + done, Int64(got))
                stats.zeroedBytes += Int64(got)
            } else {
                try writeChunk(t, p, got, at: at + done, bounce: r.bounce)
                stats.dataBytes += Int64(got)
            }
            done += Int64(got)
        }
    }

    static func writeChunk(_ t: TargetDevice, _ bytes: UnsafeMutableRawPointer, _ n: Int, at: Int64,
                           bounce: UnsafeMutableRawPointer) throws {
        // O_DIRECT needs 4 KiB-aligned offsets, lengths and memory; anything
        // else (the tail of an odd-sized image) goes through the buffered fd.
        let direct = t.directFD >= 0 && at % 4096 == 0 && n % 4096 == 0 && n <= chunk
        var buf = bytes
        if direct && Int(bitPattern: bytes) % 4096 != 0 {
            if bytes != bounce { memcpy(bounce, bytes, n) }
            buf = bounce
        }
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
