#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The lock of an object whose state is spread over several fields: the
/// standard library's `Mutex`, guarding nothing of its own.
final class Lock: Sendable {
    private let m = Mutex(())
    init() {}
    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        try m.withLock { _ in try body() }
    }
}

/// A one-shot value handed from an async task to a blocked OS thread.
final class Rendezvous<T>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let cond: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)
    private var value: T?
    init() {
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }
    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }
    func put(_ v: T) {
        pthread_mutex_lock(mutex)
        value = v
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }
    func take() -> T {
        pthread_mutex_lock(mutex)
        while value == nil { pthread_cond_wait(cond, mutex) }
        let v = value!
        pthread_mutex_unlock(mutex)
        return v
    }
}

/// Runs an async operation from a thread outside the Swift concurrency pool
/// (an HTTP worker) and waits for it. Only for short operations.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
    let r = Rendezvous<Result<T, any Error>>()
    Task {
        do { r.put(.success(try await body())) } catch { r.put(.failure(error)) }
    }
    return r.take()
}

