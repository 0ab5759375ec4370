#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the kernel's clocks.
public enum Clock {
    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    /// Wall-clock seconds since the epoch.
    public static func wall() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    public static func boottime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// A moment on the monotonic clock by which something must be done (a
/// download, a request): every wait on the way is bounded by what is left.
public struct Deadline: Sendable, Equatable, Comparable {
    /// `Clock.monotonic()` seconds.
    public var at: Double

    public init(at: Double) { self.at = at }

    /// `seconds` from now.
    public static func after(_ seconds: Double) -> Deadline { Deadline(at: Clock.monotonic() + seconds) }

    /// No deadline: only the per-operation timeouts bound the waits.
    public static let never = Deadline(at: .infinity)

    /// Seconds left (negative once passed).
    public var remaining: Double { at - Clock.monotonic() }
    public var hasPassed: Bool { Clock.monotonic() >= at }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.at < b.at }
}
