#if canImport(Glibc)
import Glibc
#endif

/// The PE's payload: the hypervisor, its firmware and the installer's tools,
/// which the panel does not need to answer. It travels as `cloudbios.sqfs`
/// beside the core initramfs (so the boot loader loads less); PID 1 copies it
/// to RAM and mounts it at `mountPoint` while the rest of the PE starts, and
/// the core's symlinks point into it. The PXE initramfs carries it unpacked
/// in place. Whoever needs QEMU or the installer's tools waits for it here.
public enum Payload {
    public static let mountPoint = "/usr/lib/cloudbios/payload"
    /// The id of the payload this core was built with.
    public static let idFile = "/usr/lib/cloudbios/payload.id"
    /// The same id inside the payload.
    public static let idName = "cloudbios-payload.id"
    public static let fileName = "cloudbios.sqfs"
    /// Inside the payload: the libraries the daemon loads before its panel
    /// answers, one absolute path a line.
    public static let panelListName = "cloudbios-panel.list"
    /// The RAM copy that is mounted.
    public static let ramCopy = "/run/cloudbios/cloudbios.sqfs"
    /// Written by PID 1 when no payload could be mounted: the reason.
    public static let failedMarker = "/run/cloudbios/payload.failed"
    /// Written by PID 1 once the payload is mounted and its drivers (KVM,
    /// NICs of physical machines) are loaded: only then is it ready.
    public static let readyMarker = "/run/cloudbios/payload.ready"

    public enum State: Equatable, Sendable {
        /// This system has no separate payload (a development host).
        case notNeeded
        case ready
        /// PID 1 is still mounting it or loading its drivers.
        case pending
        case failed(String)
    }

    public static func state(root: String = "") -> State {
        guard let want = Files.readTrimmed(root + idFile) else { return .notNeeded }
        if matches(root + mountPoint, want) && Files.exists(root + readyMarker) { return .ready }
        if let why = Files.readTrimmed(root + failedMarker) { return .failed(why) }
        return .pending
    }

    /// Whether `dir` holds the payload with id `want`.
    public static func matches(_ dir: String, _ want: String) -> Bool {
        Files.readTrimmed(dir + "/" + idName) == want
    }

    /// Whether the payload's files can be read (mounted, or not needed),
    /// whether or not its drivers are loaded yet.
    public static func isMounted(root: String = "") -> Bool {
        guard let want = Files.readTrimmed(root + idFile) else { return true }
        return matches(root + mountPoint, want)
    }

    /// Blocks until the payload's files can be read (at most `timeout` s),
    /// not for its drivers: nil then, else why not.
    public static func waitMounted(timeout: Double = 60, root: String = "") -> String? {
        wait(timeout: timeout, root: root, poll: 20_000) { isMounted(root: root) }
    }

    /// Blocks while the payload is being mounted (at most `timeout` s): nil
    /// when QEMU and the tools can be used, else why not.
    public static func waitUsable(timeout: Double = 60, root: String = "") -> String? {
        wait(timeout: timeout, root: root, poll: 100_000) { [.ready, .notNeeded].contains(state(root: root)) }
    }

    /// Polls `done` until it holds (nil), PID 1 reports the payload failed
    /// (its reason) or `timeout` s pass.
    private static func wait(timeout: Double, root: String, poll: UInt32, until done: () -> Bool) -> String? {
        let deadline = Clock.monotonic() + timeout
        while !done() {
            if let why = Files.readTrimmed(root + failedMarker) { return why }
            if Clock.monotonic() >= deadline { return "the payload (\(fileName)) is still not mounted after \(Int(timeout)) s" }
            usleep(poll)
        }
        return nil
    }
}

/// Runs `body` on a new detached OS thread (on the caller's if none can be made).
public func spawnThread(_ body: @escaping @Sendable () -> Void) {
    if !startThread(body) { body() }
}

/// Starts `body` on a new detached OS thread; false (and `body` never runs)
/// when no thread can be made. For bodies that must not run on the caller's
/// thread (a read loop).
@discardableResult
public func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var tid = pthread_t()
    if pthread_create(&tid, nil, { arg in
        Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box) == 0 {
        pthread_detach(tid)
        return true
    }
    Unmanaged<ThreadBody>.fromOpaque(box).release()
    return false
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
