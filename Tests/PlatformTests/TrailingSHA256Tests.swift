import Testing
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

@Suite struct TrailingSHA256Tests {
    @Test func hashesAFileAsItIsWritten() throws {
        let path = "/tmp/cb-trail-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try syscall("create") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(fd); unlink(path) }
        let hasher = try TrailingSHA256(path: path)
        // pieces of odd sizes, past the hasher's 32 MiB window, the
        // hasher sometimes caught up and waiting, sometimes behind
        var total: Int64 = 0
        var piece = [UInt8](repeating: 0, count: 3 << 20)
        for i in 0..<30 {
            let n = (i * 1_234_567) % piece.count + 1
            for j in 0..<n { piece[j] = UInt8(truncatingIfNeeded: j &* 31 &+ i) }
            try Files.writeAll(fd, piece[0..<n])
            total += Int64(n)
            hasher.written(total)
            if i % 5 == 0 { usleep(20_000) }
        }
        #expect(total > 32 << 20)
        #expect(try hasher.finish() == sha256File(path))
    }

    @Test func anEmptyFileAndAnAbandonedOne() throws {
        let path = "/tmp/cb-trail-empty-\(getpid())"
        try Files.writeAtomically(path, "")
        defer { unlink(path) }
        #expect(try TrailingSHA256(path: path).finish() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        try Files.writeAtomically(path, "abc")
        do {
            let abandoned = try TrailingSHA256(path: path)
            abandoned.written(3)
        }
        let h = try TrailingSHA256(path: path)
        h.written(3)
        #expect(try h.finish() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(throws: SystemError.self) { try TrailingSHA256(path: "/nonexistent/file") }
    }
}
