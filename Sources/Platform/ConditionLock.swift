#if canImport(Glibc)
import Glibc
#endif

/// A lock with a condition to wait on under it (pthread mutex and condition
/// variable on the monotonic clock), for state that threads block on until
/// another thread changes it. Where nothing waits, `Mutex` is the lock.
public final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let cond: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// With the lock held: releases it until `broadcast` (or a spurious
    /// wake-up) or until `deadline` (`Clock.monotonic()` seconds; nil: no
    /// limit), then holds it again. False when the deadline has passed.
    @discardableResult
    public func wait(until deadline: Double?) -> Bool {
        guard let deadline else {
            pthread_cond_wait(cond, mutex)
            return true
        }
        if Clock.monotonic() >= deadline { return false }
        let whole = deadline.rounded(.down)
        var ts = timespec(tv_sec: Int(whole), tv_nsec: min(999_999_999, Int((deadline - whole) * 1e9)))
        pthread_cond_timedwait(cond, mutex, &ts)
        return Clock.monotonic() < deadline
    }

    /// Wakes every thread in `wait`.
    public func broadcast() { pthread_cond_broadcast(cond) }
}
