import Testing
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HashingFileSinkTests {
    /// Streams `sizes` pieces of a pattern through a sink into a new file in
    /// `directory`, and the same bytes with plain writes into another; the
    /// sink's hash, both files' hashes and sizes must agree.
    func roundTrip(_ sizes: [Int], in directory: String) throws {
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let path = "\(directory)/cb-sink-\(tag)", plain = "\(directory)/cb-sink-plain-\(tag)"
        let fd = try syscall("create") { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        let pfd = try syscall("create") { open(plain, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        defer { close(fd); close(pfd); unlink(path); unlink(plain) }
        let sink = try HashingFileSink(fd: fd, what: path)
        var piece = [UInt8](repeating: 0, count: sizes.max() ?? 0)
        var total = 0
        for (i, n) in sizes.enumerated() {
            for j in 0..<n { piece[j] = UInt8(truncatingIfNeeded: (total + j) &* 31 &+ i) }
            try piece[0..<n].withUnsafeBytes { try sink.write($0) }
            try Files.writeAll(pfd, piece[0..<n])
            total += n
        }
        let h = try sink.finish()
        try syscall("fsync") { fsync(fd) }
        #expect(Files.size(path) == Int64(total))
        #expect(h == (try sha256File(plain)))
        #expect(h == (try sha256File(path)))
    }

    @Test func writesAndHashesAcrossBlocksAndTheRing() throws {
        // odd pieces past the ring's 32 MiB (each slot reused), the reader
        // sometimes ahead, sometimes waiting; a tail that is no whole sector
        var sizes: [Int] = []
        for i in 0..<40 { sizes.append((i * 1_234_567) % (3 << 20) + 1) }
        try roundTrip(sizes, in: "/tmp")
    }

    @Test func sizesAtTheEdges() throws {
        for sizes in [[], [0], [1], [4095], [4096], [4 << 20], [(4 << 20) + 1], [4 << 20, 4096, 1], [(1 << 20) - 7, 1 << 20]] {
            try roundTrip(sizes, in: "/tmp")
        }
        #expect(try {
            let path = "/tmp/cb-sink-empty-\(getpid())"
            let fd = try syscall("create") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
            defer { close(fd); unlink(path) }
            return try HashingFileSink(fd: fd, what: path).finish()
        }() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func aFileSystemWithoutDirectIO() throws {
        // tmpfs: O_DIRECT refused or ignored, ordinary writes either way
        guard Files.isDirectory("/dev/shm") else { return }
        try roundTrip([5 << 20, 12345, 3 << 20], in: "/dev/shm")
    }

    @Test func aFailedWriteIsAnErrorAndAnAbandonedSinkStops() throws {
        let path = "/tmp/cb-sink-ro-\(getpid())"
        try Files.writeAtomically(path, "")
        defer { unlink(path) }
        // the file is open for reading only: every write to it fails
        let fd = try syscall("open") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        let sink = try HashingFileSink(fd: fd, what: path)
        let block = [UInt8](repeating: 7, count: 5 << 20)
        #expect(throws: SystemError.self) {
            try block.withUnsafeBytes { try sink.write($0) }
            try sink.finish()
        }
        do {
            let wfd = try syscall("open") { open(path, O_WRONLY | O_TRUNC | O_CLOEXEC) }
            defer { close(wfd) }
            let abandoned = try HashingFileSink(fd: wfd, what: path)
            try block.withUnsafeBytes { try abandoned.write($0) }
        }
    }
}
