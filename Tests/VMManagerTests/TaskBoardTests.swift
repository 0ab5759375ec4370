import Config
import Synchronization
import Testing
@testable import VMManager

/// What waits on a task is called once, when it ends, with how it ended.
@Suite struct TaskBoardTests {
    @Test func aWaiterIsCalledOnceWhenTheTaskEnds() {
        let board = TaskBoard()
        let t = board.begin("import", on: "appliance.ova")
        let seen = Mutex<[TaskInfo.State]>([])
        board.whenSettled(t.id) { info in seen.withLock { $0.append(info.state) } }
        board.update(t.id) { $0.state = .running }
        board.progress(t.id, 1, 2)
        #expect(seen.withLock { $0 }.isEmpty)
        board.update(t.id) { $0.state = .succeeded }
        board.update(t.id) { $0.message = "again" }
        #expect(seen.withLock { $0 } == [.succeeded])
    }

    @Test func aWaiterOnAnEndedTaskIsCalledAtOnceAndAnUnknownOneNever() {
        let board = TaskBoard()
        let t = board.begin("clone", on: "web2")
        board.fail(t.id, VMError.invalid("no"))
        let seen = Mutex<[TaskInfo.State]>([])
        board.whenSettled(t.id) { info in seen.withLock { $0.append(info.state) } }
        board.whenSettled("clone-99") { info in seen.withLock { $0.append(info.state) } }
        #expect(seen.withLock { $0 } == [.failed])
    }
}
