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

    @Test func anOpenDirectoryAnswersForItsEntriesAsTheyComeAndGo() throws {
        let dir = "/tmp/cb-opendir-\(getpid())"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        let d = try OpenDirectory(dir)
        #expect(!d.contains("img"))
        try Files.writeAtomically(dir + "/img", "x")
        #expect(d.contains("img"))
        #expect(symlink(dir + "/img", dir + "/link") == 0)
        #expect(d.contains("link"))
        Files.remove(dir + "/img")
        #expect(!d.contains("img") && !d.contains("link"))   // a dangling link is no entry to use
        #expect(throws: SystemError.self) { try OpenDirectory(dir + "/nope") }
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
