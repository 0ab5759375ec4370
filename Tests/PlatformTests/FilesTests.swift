import Testing
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FilesTests {
    @Test func atomicWriteReplacesContent() throws {
        let dir = "/tmp/cb-platform-\(getpid())"
        try Files.makeDirectories(dir + "/a/b")
        defer { Files.removeTree(dir) }
        let p = dir + "/a/b/f.txt"
        try Files.writeAtomically(p, "one")
        try Files.writeAtomically(p, "two")
        #expect(try Files.readString(p) == "two")
        #expect(Files.list(dir + "/a/b") == ["f.txt"])
    }

    @Test func launcherCapturesOutputAndStatus() throws {
        let r = try Launcher("/bin/sh", ["-c", "echo hi; exit 3"]).run()
        #expect(r.status == 3)
        #expect(r.output == "hi\n")
    }

    @Test func syscallThrowsErrno() {
        #expect(throws: SystemError.self) { try Files.read("/nonexistent/file") }
    }
}
