#if canImport(Glibc)
import Glibc
#endif

/// When to restart a service that exited: exponential backoff, reset after
/// the service has stayed up for a while.
public struct RestartPolicy: Equatable, Sendable {
    public var initialDelay: Double
    public var maxDelay: Double
    public var factor: Double
    /// A run at least this long counts as healthy and resets the backoff.
    public var resetAfter: Double

    public init(initialDelay: Double = 1, maxDelay: Double = 30, factor: Double = 2, resetAfter: Double = 60) {
        self.initialDelay = initialDelay; self.maxDelay = maxDelay; self.factor = factor; self.resetAfter = resetAfter
    }

    public static let standard = RestartPolicy()
}

/// The backoff state of one service.
public struct Backoff: Equatable, Sendable {
    public var policy: RestartPolicy
    /// Consecutive short-lived runs.
    public private(set) var failures = 0

    public init(_ policy: RestartPolicy = .standard) { self.policy = policy }

    /// Records an exit after `ranFor` seconds; returns the delay before the
    /// next start.
    public mutating func exited(ranFor: Double) -> Double {
        if ranFor >= policy.resetAfter { failures = 0 }
        var d = policy.initialDelay
        for _ in 0..<failures { d *= policy.factor; if d >= policy.maxDelay { break } }
        failures += 1
        return min(d, policy.maxDelay)
    }
}

/// A long-running child of PID 1 (the daemon, the viewer, a DHCP client).
public final class Service {
    public let name: String
    public var path: String
    public var arguments: [String]
    public var backoff: Backoff
    public internal(set) var pid: pid_t?
    public internal(set) var startedAt: Double?
    /// When the next start is due (nil while running or when stopped).
    public internal(set) var nextStart: Double?
    public internal(set) var starts = 0
    public internal(set) var lastStatus: Int32?
    /// False once stopped on purpose: not restarted.
    public internal(set) var enabled = true

    public init(name: String, path: String, arguments: [String], policy: RestartPolicy = .standard) {
        self.name = name; self.path = path; self.arguments = arguments; self.backoff = Backoff(policy)
    }
}

/// Starts services and restarts them with backoff when they exit. Pure
/// bookkeeping over an injected clock and spawner, so tests drive it.
public final class Supervisor {
    public typealias Spawner = (Service) throws -> pid_t
    public private(set) var services: [Service] = []
    let clock: () -> Double
    let spawner: Spawner
    let log: (String) -> Void
    /// During shutdown nothing is restarted.
    public var shuttingDown = false

    public init(clock: @escaping () -> Double, spawner: @escaping Spawner, log: @escaping (String) -> Void = { _ in }) {
        self.clock = clock; self.spawner = spawner; self.log = log
    }

    public func service(_ name: String) -> Service? { services.first { $0.name == name } }

    /// Adds a service, due to start at the next `tick()`.
    @discardableResult
    public func add(_ service: Service) -> Service {
        services.removeAll { $0.name == service.name && $0.pid == nil }
        service.nextStart = clock()
        services.append(service)
        return service
    }

    /// Starts every service that is due. A failed spawn counts as an exit.
    public func tick() {
        guard !shuttingDown else { return }
        let now = clock()
        for s in services where s.enabled && s.pid == nil {
            guard let due = s.nextStart, due <= now else { continue }
            do {
                let pid = try spawner(s)
                s.pid = pid; s.startedAt = now; s.nextStart = nil; s.starts += 1
                log("started \(s.name) (pid \(pid))\(s.starts > 1 ? ", restart \(s.starts - 1)" : "")")
            } catch {
                let delay = s.backoff.exited(ranFor: 0)
                s.nextStart = now + delay
                log("cannot start \(s.name): \(error); retrying in \(Self.format(delay)) s")
            }
        }
    }

    /// Records a child's exit. Returns false when the pid is none of ours
    /// (an orphan that was reaped).
    @discardableResult
    public func exited(pid: pid_t, status: Int32) -> Bool {
        guard let s = services.first(where: { $0.pid == pid }) else { return false }
        let now = clock()
        let ran = now - (s.startedAt ?? now)
        s.pid = nil; s.lastStatus = status
        let how = status > 128 ? "killed by signal \(status - 128)" : "exited with status \(status)"
        if !s.enabled || shuttingDown {
            log("\(s.name) \(how)")
            return true
        }
        let delay = s.backoff.exited(ranFor: ran)
        s.nextStart = now + delay
        log("\(s.name) \(how) after \(Self.format(ran)) s; restarting in \(Self.format(delay)) s")
        return true
    }

    /// Stops restarting a service; returns its pid when it is running.
    /// Forgets every service named `name`; returns the pids of those still
    /// running (no longer restarted: the caller stops them).
    public func remove(_ name: String) -> [pid_t] {
        let running = services.filter { $0.name == name }.compactMap(\.pid)
        services.removeAll { $0.name == name }
        return running
    }

    public func disable(_ name: String) -> pid_t? {
        guard let s = service(name) else { return nil }
        s.enabled = false; s.nextStart = nil
        return s.pid
    }

    /// Seconds until the next due start, nil when nothing is pending.
    public func nextDeadline() -> Double? {
        let now = clock()
        return services.compactMap { $0.enabled && $0.pid == nil ? $0.nextStart : nil }.min().map { max(0, $0 - now) }
    }

    static func format(_ d: Double) -> String {
        let t = (d * 10).rounded() / 10
        return t == t.rounded() ? String(Int(t)) : String(t)
    }
}
