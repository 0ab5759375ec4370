#if canImport(Glibc)
import Glibc
#endif
import CBase

/// The one owner of child reaping in a process. Every wait for a child goes
/// through it (`Launcher.run` and `Launcher.wait`, PID 1's services and
/// shutdown, the KVM probe), so two waiters never race for one pid and no
/// status is lost to ECHILD.
///
/// A child is known from its spawn (`spawn`, which `Launcher` uses) until
/// its status is taken. By default the thread that waits for a child reaps
/// it, with waitpid on its pid alone, so processes the Reaper does not know
/// are never touched. After `adoptOrphans` (PID 1) one thread reaps every
/// child with waitpid(-1) and hands each status to the child's waiters and
/// `onExit` handler; the exits of processes nobody spawned here (orphans
/// the kernel re-parented) go to the handler given there.
public final class Reaper: @unchecked Sendable {
    /// The process's reaper.
    public static let shared = Reaper()

    private struct Child {
        /// The exit status once reaped (128+signal when killed).
        var status: Int32?
        /// Threads in `wait` for it.
        var waiters = 0
        /// One of them is in waitpid for it.
        var reaping = false
        var onExit: (@Sendable (Int32) -> Void)?
        /// Nobody will ask: its status is dropped.
        var detached = false
    }

    private enum Reaped { case exited(Int32), running, notChild }

    private let lock = ConditionLock()
    // Guarded by `lock`:
    private var children: [pid_t: Child] = [:]
    /// Statuses of processes reaped that nobody spawned here, for a waiter
    /// that comes late.
    private var unclaimed: [pid_t: Int32] = [:]
    private var adopting = false
    private var orphanHandler: (@Sendable (pid_t, Int32) -> Void)?
    /// Counts spawns: the adopting thread, finding no child, waits for one.
    private var spawns = 0

    /// At most this many statuses nobody asked for are kept.
    static let keep = 256

    init() {}

    /// Whether one thread reaps every child (`adoptOrphans`).
    public var adoptsOrphans: Bool { lock.withLock { adopting } }

    /// Runs `start`, which makes a child and returns its pid, and knows the
    /// child from then on: it cannot be reaped before it is known.
    public func spawn(_ start: () throws -> pid_t) rethrows -> pid_t {
        try lock.withLock {
            let pid = try start()
            if pid > 0 {
                children[pid] = Child()
                unclaimed[pid] = nil
                spawns += 1
                lock.broadcast()
            }
            return pid
        }
    }

    /// Waits for a child to exit and takes its status (128+signal when
    /// killed): nil when `timeout` seconds pass first, -1 when `pid` is no
    /// child of this process (or its status was taken already).
    public func wait(_ pid: pid_t, timeout: Double? = nil) -> Int32? {
        guard pid > 0 else { return -1 }
        let deadline = timeout.map { Clock.monotonic() + max(0, $0) }
        lock.lock()
        defer { lock.unlock() }
        if children[pid] == nil {
            if let s = unclaimed.removeValue(forKey: pid) { return s }
            // the adopting thread reaps it: it must be a child still there
            if adopting && !Self.isChild(pid) { return -1 }
            children[pid] = Child()
        }
        children[pid]!.waiters += 1
        let result = waitLocked(pid, until: deadline)
        if var c = children[pid] {
            c.waiters -= 1
            children[pid] = c.waiters == 0 && (c.status != nil || result == -1) ? nil : c
        }
        return result
    }

    /// The status of a child that has exited (taken), nil while it runs.
    public func exitStatus(_ pid: pid_t) -> Int32? { wait(pid, timeout: 0) }

    /// Calls `handler` once with the child's status when it exits (at once
    /// when it has): on the reaping thread, so it must be quick. Without
    /// `adoptOrphans` a thread of its own waits for the child.
    public func onExit(_ pid: pid_t, _ handler: @escaping @Sendable (Int32) -> Void) {
        guard pid > 0 else { return handler(-1) }
        lock.lock()
        guard adopting else {
            lock.unlock()
            spawnThread { handler(self.wait(pid) ?? -1) }
            return
        }
        if let s = statusLocked(pid) {
            lock.unlock()
            handler(s)
            return
        }
        if children[pid] == nil && !Self.isChild(pid) {
            lock.unlock()
            handler(-1)
            return
        }
        children[pid, default: Child()].onExit = handler
        lock.unlock()
    }

    /// Lets go of a child nobody will wait for: its status is dropped.
    public func detach(_ pid: pid_t) {
        guard pid > 0 else { return }
        lock.lock()
        guard adopting else {
            lock.unlock()
            onExit(pid) { _ in }
            return
        }
        if statusLocked(pid) == nil && children[pid] != nil { children[pid]!.detached = true }
        lock.unlock()
    }

    /// Hands in the status of a child that code outside the Reaper reaped
    /// (a raw waitpid), so that its waiter still gets it.
    public func handIn(_ pid: pid_t, status: Int32) {
        settle(pid, status, orphan: false)
    }

    /// Takes a status already reaped or handed in, without waiting.
    public func take(_ pid: pid_t) -> Int32? {
        lock.withLock { takeLocked(pid) }
    }

    /// From now on one thread reaps every child of this process and every
    /// orphan the kernel gives it (PID 1 gets them all; another process
    /// becomes a child subreaper of its descendants). Waiters and `onExit`
    /// handlers get their children's statuses from it; `handler` gets the
    /// exits of processes not spawned through the Reaper, on that thread.
    /// For the life of the process; false when no thread can be started.
    @discardableResult
    public func adoptOrphans(_ handler: @escaping @Sendable (_ pid: pid_t, _ status: Int32) -> Void) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        orphanHandler = handler
        if adopting { return true }
        if getpid() != 1 { _ = cb_set_child_subreaper() }
        guard startThread({ self.reapEverything() }) else { return false }
        adopting = true
        lock.broadcast()
        return true
    }

    // MARK: reaping

    private func waitLocked(_ pid: pid_t, until deadline: Double?) -> Int32? {
        while true {
            guard let c = children[pid] else { return -1 }
            if let s = c.status { return s }
            if adopting || c.reaping {
                if !lock.wait(until: deadline) { return children[pid]?.status }
                continue
            }
            children[pid]!.reaping = true
            lock.unlock()
            let r = Self.reap(pid, until: deadline)
            lock.lock()
            children[pid]?.reaping = false
            lock.broadcast()
            switch r {
            case .exited(let s):
                if let h = settleLocked(pid, s) {
                    lock.unlock(); h(s); lock.lock()
                }
                return s
            case .running:
                return nil
            case .notChild:
                // reaped by someone else (the adopting thread, or code that
                // hands the status in): give it a moment to arrive
                let grace = min(Clock.monotonic() + 1, deadline ?? .infinity)
                while children[pid]?.status == nil && lock.wait(until: grace) {}
                return children[pid]?.status ?? -1
            }
        }
    }

    /// waitpid on one pid until it exits or `deadline` passes: a pidfd says
    /// when it exits (without one, every 5 ms).
    private static func reap(_ pid: pid_t, until deadline: Double?) -> Reaped {
        var st: Int32 = 0
        var pidfd: Int32?
        defer { if let fd = pidfd, fd >= 0 { close(fd) } }
        while true {
            let r = waitpid(pid, &st, deadline == nil ? 0 : WNOHANG)
            if r == pid { return .exited(Launcher.exitCode(st)) }
            if r < 0 {
                if Errno.current == .interrupted { continue }
                return .notChild
            }
            guard let deadline else { continue }
            let left = deadline - Clock.monotonic()
            if left <= 0 { return .running }
            if pidfd == nil { pidfd = cb_pidfd_open(pid) }
            if let fd = pidfd, fd >= 0 {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, Int32(min(left, 3600) * 1000) + 1)
            } else {
                usleep(UInt32(min(left, 0.005) * 1e6) + 1)
            }
        }
    }

    /// The adopting thread: waitpid(-1) for as long as the process lives.
    private func reapEverything() {
        while true {
            let seen = lock.withLock { spawns }
            var st: Int32 = 0
            let pid = waitpid(-1, &st, 0)
            if pid > 0 { settle(pid, Launcher.exitCode(st), orphan: true); continue }
            if Errno.current == .interrupted { continue }
            // no child at all: wait for the next spawn (a second at most)
            lock.withLock { if spawns == seen { lock.wait(until: Clock.monotonic() + 1) } }
        }
    }

    /// Records a status reaped (or handed in) and tells whoever waits.
    private func settle(_ pid: pid_t, _ status: Int32, orphan: Bool) {
        lock.lock()
        guard children[pid] != nil else {
            if unclaimed.count >= Self.keep { unclaimed.removeAll() }
            unclaimed[pid] = status
            let h = orphanHandler
            lock.broadcast()
            lock.unlock()
            if orphan { h?(pid, status) }
            return
        }
        let h = settleLocked(pid, status)
        lock.unlock()
        h?(status)
    }

    /// Sets a known child's status; returns its `onExit` handler to call
    /// once the lock is released.
    private func settleLocked(_ pid: pid_t, _ status: Int32) -> (@Sendable (Int32) -> Void)? {
        guard var c = children[pid] else { return nil }
        lock.broadcast()
        if c.detached && c.waiters == 0 { children[pid] = nil; return nil }
        let h = c.onExit
        c.onExit = nil
        c.status = status
        children[pid] = c.waiters == 0 && h != nil ? nil : c
        if children.count > Self.keep {
            let stale = children.filter { $0.value.status != nil && $0.value.waiters == 0 }.map(\.key)
            if stale.count >= Self.keep { for p in stale { children[p] = nil } }
        }
        return h
    }

    /// A status already there, for a handler or nobody: taken unless
    /// threads in `wait` still take it.
    private func statusLocked(_ pid: pid_t) -> Int32? {
        if let c = children[pid] {
            guard let s = c.status else { return nil }
            if c.waiters == 0 { children[pid] = nil }
            return s
        }
        return unclaimed.removeValue(forKey: pid)
    }

    private func takeLocked(_ pid: pid_t) -> Int32? {
        if let c = children[pid] {
            guard let s = c.status, c.waiters == 0 else { return nil }
            children[pid] = nil
            return s
        }
        return unclaimed.removeValue(forKey: pid)
    }

    /// Whether `pid` is a process whose parent is this one.
    static func isChild(_ pid: pid_t) -> Bool {
        guard pid > 0, let s = Files.readTrimmed("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return false }
        let fields = s[s.index(after: close)...].split(separator: " ")
        return fields.count > 1 && pid_t(fields[1]) == getpid()
    }
}
