#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Platform

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
    private let lock = ConditionLock()
    private var value: T?
    init() {}
    func put(_ v: T) {
        lock.withLock {
            value = v
            lock.broadcast()
        }
    }
    func take() -> T {
        lock.withLock {
            while value == nil { lock.wait(until: nil) }
            return value!
        }
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

