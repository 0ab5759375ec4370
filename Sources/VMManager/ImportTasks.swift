import Config
import Synchronization

/// The tasks of image imports from URLs (`import-N`): state, progress and
/// message, as `GET /api/v1/tasks/{id}` reports them.
public final class ImportTasks: Sendable {
    private struct State {
        var next = 1
        var order: [String] = []
        var tasks: [String: TaskInfo] = [:]
        var names: [String: String] = [:]   // task id -> image name
    }
    private let state = Mutex(State())

    func begin(_ image: String) -> TaskInfo {
        state.withLock { s in
            let t = TaskInfo(id: "import-\(s.next)", kind: "import", state: .pending, message: "queued")
            s.next += 1
            s.order.append(t.id)
            s.tasks[t.id] = t
            s.names[t.id] = image
            // keep the last 100
            while s.order.count > 100 { let old = s.order.removeFirst(); s.tasks[old] = nil; s.names[old] = nil }
            return t
        }
    }

    func update(_ id: String, _ change: (inout TaskInfo) -> Void) {
        state.withLock { s in if var t = s.tasks[id] { change(&t); s.tasks[id] = t } }
    }

    /// Progress from bytes; unknown sizes stay at 0 until done.
    func progress(_ id: String, _ done: Int64, _ total: Int64?) {
        update(id) { t in
            if let total, total > 0 { t.progress = Int(min(99, done * 100 / total)) }
            t.message = "downloaded \(Sizes.human(done))" + (total.map { " of \(Sizes.human($0))" } ?? "")
        }
    }

    func running(_ image: String) -> Bool {
        state.withLock { s in s.names.contains { $0.value == image && (s.tasks[$0.key]?.state == .running || s.tasks[$0.key]?.state == .pending) } }
    }

    public func task(_ id: String) -> TaskInfo? { state.withLock { $0.tasks[id] } }
    public func all() -> [TaskInfo] { state.withLock { s in s.order.compactMap { s.tasks[$0] } } }
}
