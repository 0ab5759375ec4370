import Testing
@testable import Apps
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Layers stacked in real directories, as the root filesystem builder does.
@Suite struct RootFSMergeTests {
    let base = "/tmp/cb-apps-merge-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    func write(_ path: String, _ text: String) throws {
        try Files.makeDirectories(Files.parent(of: path))
        try Files.writeAtomically(path, text)
    }

    @Test func whiteoutsOpaqueDirectoriesAndReplacementsStackAsOverlayfs() throws {
        let lower = base + "/lower", upper = base + "/upper", outside = base + "/outside"
        defer { Files.removeTree(base) }
        try write(lower + "/etc/passwd", "root")
        try write(lower + "/etc/gone", "x")
        try write(lower + "/cache/old", "x")
        try write(lower + "/dir-then-file/x", "x")
        try Files.makeDirectories(outside)
        #expect(symlink(outside, lower + "/escape") == 0)
        try write(upper + "/etc/.wh.gone", "")
        try write(upper + "/etc/new", "n")
        try write(upper + "/cache/.wh..wh..opq", "")
        try write(upper + "/cache/fresh", "f")
        try write(upper + "/dir-then-file", "now a file")
        try write(upper + "/escape/pwned", "p")
        try RootFS.merge(upper, into: lower)
        #expect(Files.list(lower + "/etc") == ["new", "passwd"])
        #expect(Files.list(lower + "/cache") == ["fresh"])
        #expect(try Files.readString(lower + "/dir-then-file") == "now a file")
        #expect(Files.readLink(lower + "/escape") == nil)
        #expect(Files.list(lower + "/escape") == ["pwned"])
        #expect(Files.list(outside).isEmpty)
        #expect(Files.list(upper).isEmpty)
    }
}
