import Config
import Synchronization

/// The VM manager's long operations (image imports, OVA imports, and every
/// other job that answers `202` with a task): state, progress, message and
/// result, as `GET /api/v1/tasks/{id}` reports them. Ids are `KIND-N`; each
/// task names the thing it works on (an image, a VM), so a second job on the
/// same thing can be refused while one runs. The last 100 tasks are kept.
public final class TaskBoard: Sendable {
    private struct State {
        var next = 1
        var order: [String] = []
        var tasks: [String: TaskInfo] = [:]
        var subjects: [String: String] = [:]   // task id -> what it works on
        var settled: [String: [@Sendable (TaskInfo) -> Void]] = [:]   // task id -> called once it ends
    }
    private let state = Mutex(State())

    public init() {}

    /// A new pending task of `kind` (`import`, `backup`, …) on `subject`;
    /// `scope` (a fleet node's name) goes into its id, so ids of
    /// different nodes never meet.
    public func begin(_ kind: String, on subject: String, scope: String? = nil) -> TaskInfo {
        state.withLock { s in
            let t = TaskInfo(id: "\(kind)-" + (scope.map { "\($0)-" } ?? "") + "\(s.next)", kind: kind, state: .pending, message: "queued")
            s.next += 1
            s.order.append(t.id)
            s.tasks[t.id] = t
            s.subjects[t.id] = subject
            while s.order.count > 100 { let old = s.order.removeFirst(); s.tasks[old] = nil; s.subjects[old] = nil; s.settled[old] = nil }
            return t
        }
    }

    public func update(_ id: String, _ change: (inout TaskInfo) -> Void) {
        let ended: (TaskInfo, [@Sendable (TaskInfo) -> Void])? = state.withLock { s in
            guard var t = s.tasks[id] else { return nil }
            change(&t)
            s.tasks[id] = t
            guard t.state == .succeeded || t.state == .failed, let calls = s.settled.removeValue(forKey: id) else { return nil }
            return (t, calls)
        }
        if let (t, calls) = ended { for call in calls { call(t) } }
    }

    /// Calls `action` once the task has succeeded or failed (now, when it
    /// has already; never for a task no longer kept).
    public func whenSettled(_ id: String, _ action: @escaping @Sendable (TaskInfo) -> Void) {
        let now: TaskInfo? = state.withLock { s in
            guard let t = s.tasks[id] else { return nil }
            if t.state == .succeeded || t.state == .failed { return t }
            s.settled[id, default: []].append(action)
            return nil
        }
        if let now { action(now) }
    }

    /// Progress from bytes; unknown sizes stay at 0 until done.
    public func progress(_ id: String, _ done: Int64, _ total: Int64?, verb: String = "downloaded") {
        update(id) { t in
            if let total, total > 0 { t.progress = Int(min(99, done * 100 / total)) }
            t.message = "\(verb) \(Sizes.human(done))" + (total.map { " of \(Sizes.human($0))" } ?? "")
        }
    }

    /// Whether a task of `kind` (any kind when nil) on `subject` is pending or running.
    public func running(_ subject: String, kind: String? = nil) -> Bool {
        state.withLock { s in
            s.subjects.contains { id, sub in
                guard sub == subject, let t = s.tasks[id], kind == nil || t.kind == kind else { return false }
                return t.state == .running || t.state == .pending
            }
        }
    }

    /// Marks the task succeeded with its message and result.
    public func succeed(_ id: String, _ message: String, result: JSONValue? = nil) {
        update(id) { $0.state = .succeeded; $0.progress = 100; $0.message = message; $0.resultJSON = result?.serialized() }
    }

    /// Marks the task failed with the error's description.
    public func fail(_ id: String, _ error: any Error) {
        update(id) { $0.state = .failed; $0.message = "\(error)" }
    }

    public func task(_ id: String) -> TaskInfo? { state.withLock { $0.tasks[id] } }
    public func all() -> [TaskInfo] { state.withLock { s in s.order.compactMap { s.tasks[$0] } } }
}
