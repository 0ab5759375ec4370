import Testing
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileDescriptorTests {
    @Test func aFailedCallSaysWhatAndWhy() {
        do {
            _ = try FileDescriptor.open("/nonexistent/cb-fd-test", O_RDONLY)
            Issue.record("opened a file that is not there")
        } catch let e as SystemError {
            #expect(e.code == .noSuchFile)
            #expect(e.errno == ENOENT)
            #expect("\(e)" == "open /nonexistent/cb-fd-test: No such file or directory")
        } catch {
            Issue.record("\(error)")
        }
        #expect("\(Errno(EACCES))" == String(cString: strerror(EACCES)))
    }

    /// More than a pipe holds, written on one thread and read to the end
    /// on another.
    @Test func aPipeCarriesEveryByte() throws {
        let (r, w) = try FileDescriptor.pipe()
        defer { r.close() }
        for fd in [r, w] { #expect(fcntl(fd.rawValue, F_GETFD) & FD_CLOEXEC != 0) }
        let data = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        spawnThread {
            try? w.writeAll(data)
            w.close()
        }
        #expect(try r.readToEnd() == data)
    }

    @Test func readToEndStopsAtItsLimit() throws {
        let (r, w) = try FileDescriptor.pipe()
        defer { r.close() }
        try w.writeAll(Array("0123456789".utf8))
        w.close()
        #expect(try r.readToEnd(limit: 4) == Array("0123".utf8))
    }

    @Test func copiesAndWritesInPlace() throws {
        let dir = "/tmp/cb-fd-\(getpid())"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        let big = (0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 / 3) }
        try Files.writeAtomically(dir + "/a", big)
        try Files.copy(dir + "/a", to: dir + "/b")
        #expect(try Files.read(dir + "/b") == big)
        // in place: the same file (inode), no temp file beside it
        try Files.writeAtomically(dir + "/attr", "0\n")
        var before = stat(), after = stat()
        stat(dir + "/attr", &before)
        try Files.writeInPlace(dir + "/attr", "1\n")
        stat(dir + "/attr", &after)
        #expect(before.st_ino == after.st_ino)
        #expect(try Files.readString(dir + "/attr") == "1\n")
        #expect(Files.list(dir) == ["a", "attr", "b"])
        // a missing attribute is an error, not a new file
        #expect(throws: SystemError.self) { try Files.writeInPlace(dir + "/missing", "1\n") }
        #expect(!Files.exists(dir + "/missing"))
    }

    @Test func launcherTakesStandardInputFromADescriptor() throws {
        let (r, w) = try FileDescriptor.pipe()
        try w.writeAll(Array("from the pipe\n".utf8))
        w.close()
        defer { r.close() }
        let out = try Launcher("/bin/cat", []).run(stdin: r)
        #expect(out.status == 0)
        #expect(out.output == "from the pipe\n")
    }
}
