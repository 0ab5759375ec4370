import Testing
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// PID 1 reaps with waitpid(-1) while its payload thread waits for its own
/// `mount`: the status must reach the thread that waits, not vanish.
@Suite(.serialized) struct ReapedChildrenTests {
    @Test func aChildReapedByAnotherThreadStillReportsItsStatus() throws {
        let pid = try Launcher("/bin/sh", ["-c", "exit 3"]).spawn()
        // the "reaper" gets there first and records what it does not own
        var st: Int32 = 0
        #expect(waitpid(pid, &st, 0) == pid)
        ReapedChildren.record(pid, status: Launcher.exitCode(st))
        #expect(Launcher.wait(pid) == 3)
        // taken once
        #expect(ReapedChildren.take(pid) == nil)
    }

    @Test func aRecordArrivingAfterTheWaiterSawECHILDIsStillFound() throws {
        let pid = try Launcher("/bin/sh", ["-c", "exit 7"]).spawn()
        var st: Int32 = 0
        #expect(waitpid(pid, &st, 0) == pid)
        let status = Launcher.exitCode(st)
        spawnThread {
            usleep(100_000)
            ReapedChildren.record(pid, status: status)
        }
        #expect(Launcher.wait(pid) == 7)
    }

    @Test func aChildNobodyRecordedIsAnError() throws {
        let pid = try Launcher("/bin/sh", ["-c", "exit 0"]).spawn()
        var st: Int32 = 0
        #expect(waitpid(pid, &st, 0) == pid)
        #expect(Launcher.wait(pid) == -1)
    }
}
