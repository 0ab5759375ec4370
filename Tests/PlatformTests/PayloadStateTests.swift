import Testing
import Platform
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PayloadStateTests {
    func root() -> String {
        var t = Array("/tmp/cb-payload-XXXXXX".utf8CString)
        let r = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        try! Files.makeDirectories(r + Payload.mountPoint)
        try! Files.makeDirectories(r + "/run/cloudbios")
        return r
    }

    @Test func aCoreWithoutAPayloadNeedsNone() {
        let r = root()
        #expect(Payload.state(root: r) == .notNeeded)
        #expect(Payload.waitUsable(timeout: 0, root: r) == nil)
    }

    @Test func pendingUntilTheMatchingPayloadIsMountedOrPID1GivesUp() throws {
        let r = root()
        try Files.writeAtomically(r + Payload.idFile, "id-1\n")
        #expect(Payload.state(root: r) == .pending)
        #expect(Payload.waitUsable(timeout: 0.2, root: r)?.contains("still not mounted") == true)
        // a payload of another build is not ours
        try Files.writeAtomically(r + Payload.mountPoint + "/" + Payload.idName, "id-2\n")
        #expect(Payload.state(root: r) == .pending)
        try Files.writeAtomically(r + Payload.failedMarker, "no cloudbios.sqfs\n")
        #expect(Payload.state(root: r) == .failed("no cloudbios.sqfs"))
        #expect(Payload.waitUsable(timeout: 5, root: r) == "no cloudbios.sqfs")
        // ours mounted, its drivers still loading: not yet ready
        Files.remove(r + Payload.failedMarker)
        try Files.writeAtomically(r + Payload.mountPoint + "/" + Payload.idName, "id-1\n")
        #expect(Payload.state(root: r) == .pending)
        try Files.writeAtomically(r + Payload.readyMarker, "")
        #expect(Payload.state(root: r) == .ready)
        #expect(Payload.waitUsable(timeout: 0, root: r) == nil)
    }

    @Test func aWaiterWakesWhenThePayloadArrives() throws {
        let r = root()
        try Files.writeAtomically(r + Payload.idFile, "id-1\n")
        spawnThread {
            usleep(300_000)
            try? Files.writeAtomically(r + Payload.mountPoint + "/" + Payload.idName, "id-1\n")
            usleep(200_000)
            try? Files.writeAtomically(r + Payload.readyMarker, "")
        }
        let t0 = Clock.monotonic()
        #expect(Payload.waitUsable(timeout: 10, root: r) == nil)
        #expect(Clock.monotonic() - t0 < 5)
    }

    @Test func filesAreReadableOnceMountedBeforeItsDriversLoad() throws {
        let r = root()
        #expect(Payload.isMounted(root: r))  // nothing to wait for
        try Files.writeAtomically(r + Payload.idFile, "id-1\n")
        #expect(!Payload.isMounted(root: r))
        #expect(Payload.waitMounted(timeout: 0.1, root: r)?.contains("still not mounted") == true)
        try Files.writeAtomically(r + Payload.mountPoint + "/" + Payload.idName, "id-2\n")
        #expect(!Payload.isMounted(root: r))  // another build's
        try Files.writeAtomically(r + Payload.failedMarker, "no cloudbios.sqfs\n")
        #expect(Payload.waitMounted(timeout: 5, root: r) == "no cloudbios.sqfs")
        Files.remove(r + Payload.failedMarker)
        spawnThread {
            usleep(200_000)
            try? Files.writeAtomically(r + Payload.mountPoint + "/" + Payload.idName, "id-1\n")
        }
        #expect(Payload.waitMounted(timeout: 10, root: r) == nil)
        // mounted is not ready: the drivers are still to come
        #expect(Payload.state(root: r) == .pending)
    }

    @Test func theTLSLibrariesLoadOnAHostWithoutAPayload() throws {
        // this process did not link them: they are opened now
        try TLSLibraries.load(timeout: 0)
        #expect(try sha256File("/dev/null") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
