import Testing
@testable import Platform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The Reaper as every process but PID 1 uses it: each child is reaped by
/// whoever waits for it, by its pid alone.
@Suite struct ReaperTests {
    @Test func twoThreadsWaitingForOneChildBothGetItsStatus() throws {
        let pid = try Launcher("/bin/sh", ["-c", "sleep 0.3; exit 5"]).spawn()
        let other = Mutex<Int32?>(nil)
        let done = ConditionLock()
        spawnThread {
            let s = Reaper.shared.wait(pid)
            done.withLock { other.withLock { $0 = s }; done.broadcast() }
        }
        #expect(Reaper.shared.wait(pid) == 5)
        let deadline = Clock.monotonic() + 5
        done.withLock { while other.withLock({ $0 }) == nil && done.wait(until: deadline) {} }
        #expect(other.withLock { $0 } == 5)
        // taken: nothing left for a third
        #expect(Reaper.shared.take(pid) == nil)
    }

    @Test func aWaitWithATimeoutEndsOnTimeAndTheChildIsStillThere() throws {
        let pid = try Launcher("/bin/sleep", ["30"]).spawn()
        let t0 = Clock.monotonic()
        #expect(Reaper.shared.wait(pid, timeout: 0.3) == nil)
        let waited = Clock.monotonic() - t0
        #expect(waited >= 0.3 && waited < 2, "waited \(waited) s")
        #expect(Reaper.shared.exitStatus(pid) == nil)
        kill(pid, SIGKILL)
        #expect(Reaper.shared.wait(pid, timeout: 10) == 128 + SIGKILL)
    }

    @Test func aTimedWaitReturnsAsSoonAsTheChildExits() throws {
        let pid = try Launcher("/bin/sh", ["-c", "sleep 0.2; exit 4"]).spawn()
        let t0 = Clock.monotonic()
        #expect(Reaper.shared.wait(pid, timeout: 20) == 4)
        #expect(Clock.monotonic() - t0 < 5)
    }

    @Test func anExitHandlerGetsTheStatus() throws {
        let pid = try Launcher("/bin/sh", ["-c", "exit 9"]).spawn()
        let got = Mutex<Int32?>(nil)
        let lock = ConditionLock()
        Reaper.shared.onExit(pid) { s in lock.withLock { got.withLock { $0 = s }; lock.broadcast() } }
        let deadline = Clock.monotonic() + 10
        lock.withLock { while got.withLock({ $0 }) == nil && lock.wait(until: deadline) {} }
        #expect(got.withLock { $0 } == 9)
    }

    @Test func aDetachedChildLeavesNoZombie() throws {
        let pid = try Launcher("/bin/sh", ["-c", "exit 0"]).spawn()
        Reaper.shared.detach(pid)
        let deadline = Clock.monotonic() + 10
        while Files.exists("/proc/\(pid)") && Clock.monotonic() < deadline { usleep(10_000) }
        #expect(!Files.exists("/proc/\(pid)"))
    }

    @Test func aPidThatIsNoChildIsAnError() {
        #expect(Reaper.shared.wait(1, timeout: 5) == -1)
        #expect(Reaper.shared.wait(0) == -1)
        #expect(Reaper.shared.wait(-1) == -1)
    }

    /// Many threads spawning and waiting at once: each gets its own
    /// child's status and output.
    @Test func concurrentRunsEachGetTheirOwnStatus() {
        #expect(runConcurrently(threads: 8, runs: 10) == [])
    }
}

/// Runs `sh -c 'echo N; exit N'` `runs` times on each of `threads` threads
/// at once; what came back wrong.
func runConcurrently(threads: Int, runs: Int) -> [String] {
    let failures = Mutex<[String]>([])
    let left = Mutex(threads)
    let lock = ConditionLock()
    for t in 0..<threads {
        spawnThread {
            for i in 0..<runs {
                let code = (t * runs + i) % 100
                let r = Result { try Launcher("/bin/sh", ["-c", "echo \(code); exit \(code)"]).run() }
                if (try? r.get().status) != Int32(code) || (try? r.get().output) != "\(code)\n" {
                    failures.withLock { $0.append("\(code): \(r)") }
                }
            }
            lock.withLock { left.withLock { $0 -= 1 }; lock.broadcast() }
        }
    }
    let deadline = Clock.monotonic() + 120
    lock.withLock { while left.withLock({ $0 }) > 0 && lock.wait(until: deadline) {} }
    if left.withLock({ $0 }) > 0 { failures.withLock { $0.append("threads still running after 120 s") } }
    return failures.withLock { $0 }
}

/// The Reaper as PID 1 uses it (`adoptOrphans`: one thread reaps every
/// child with waitpid(-1)), in a process of its own: the test binary runs
/// again with only `ReaperAdoptingTests`, which the environment switches on.
@Suite struct ReaperAdoptionTests {
    @Test func theAdoptingReaperPassesItsChecksInAProcessOfItsOwn() throws {
        let exe = Files.readLink("/proc/self/exe") ?? ""
        #expect(Files.exists(exe))
        let r = try Launcher("/usr/bin/timeout", ["120", exe, "--testing-library", "swift-testing", "--filter", "ReaperAdoptingTests"],
                             environment: Launcher.defaultEnvironment + ["CLOUDBIOS_TEST_ADOPTING_REAPER=1"]).run()
        #expect(r.status == 0, "\(r.output)")
        for name in ["launcherRunsRaceNoReaper", "servicesAreReportedOnExit", "timedWaitsAndKills", "orphansGoToTheHandler"] {
            #expect(r.output.contains("\(name)() passed"), "\(name): \(r.output)")
        }
    }
}

private let orphans = Mutex<[pid_t: Int32]>([:])
private let adopted: Bool = Reaper.shared.adoptOrphans { pid, status in orphans.withLock { $0[pid] = status } }

@Suite(.enabled(if: getenv("CLOUDBIOS_TEST_ADOPTING_REAPER") != nil))
struct ReaperAdoptingTests {
    init() { #expect(adopted && Reaper.shared.adoptsOrphans) }

    /// What a SIGCHLD reaper used to break: `Launcher.run` on other threads
    /// while one thread reaps everything.
    @Test func launcherRunsRaceNoReaper() {
        #expect(runConcurrently(threads: 6, runs: 15) == [])
        // none of them was taken for an orphan
        #expect(orphans.withLock { $0.values.filter { $0 != 0 } } == [])
    }

    @Test func servicesAreReportedOnExit() throws {
        let got = Mutex<[Int32]>([])
        let lock = ConditionLock()
        for code in [3, 4] {
            let pid = try Launcher("/bin/sh", ["-c", "sleep 0.\(code); exit \(code)"]).spawn()
            Reaper.shared.onExit(pid) { s in lock.withLock { got.withLock { $0.append(s) }; lock.broadcast() } }
        }
        // one that has exited before its handler comes
        let early = try Launcher("/bin/sh", ["-c", "exit 6"]).spawn()
        usleep(300_000)
        Reaper.shared.onExit(early) { s in lock.withLock { got.withLock { $0.append(s) }; lock.broadcast() } }
        let deadline = Clock.monotonic() + 20
        lock.withLock { while got.withLock({ $0.count }) < 3 && lock.wait(until: deadline) {} }
        #expect(got.withLock { $0.sorted() } == [3, 4, 6])
    }

    @Test func timedWaitsAndKills() throws {
        let pid = try Launcher("/bin/sleep", ["30"]).spawn()
        #expect(Reaper.shared.wait(pid, timeout: 0.2) == nil)
        #expect(Reaper.shared.exitStatus(pid) == nil)
        kill(pid, SIGTERM)
        #expect(Reaper.shared.wait(pid, timeout: 10) == 128 + SIGTERM)
        // taken: the pid is no child any more
        #expect(Reaper.shared.wait(pid, timeout: 1) == -1)
    }

    /// A grandchild whose parent exits is re-parented to this process (a
    /// child subreaper, as PID 1 gets every orphan) and reaped here.
    @Test func orphansGoToTheHandler() throws {
        let r = try Launcher("/bin/sh", ["-c", "sleep 0.3 & echo $!"]).run()
        let orphan = try #require(pid_t(r.output.split(separator: "\n").first ?? ""))
        let deadline = Clock.monotonic() + 20
        while orphans.withLock({ $0[orphan] }) == nil && Clock.monotonic() < deadline { usleep(20_000) }
        #expect(orphans.withLock { $0[orphan] } == 0)
        #expect(!Files.exists("/proc/\(orphan)"))
    }
}
