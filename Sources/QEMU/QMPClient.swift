#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Synchronization

public enum QMPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case connect(String)
    case timeout(String)
    case closed
    case protocolError(String)
    public var description: String {
        switch self {
        case .connect(let m): "QMP connect: \(m)"
        case .timeout(let c): "QMP command '\(c)' timed out"
        case .closed: "QMP connection closed"
        case .protocolError(let m): "QMP protocol error: \(m)"
        }
    }
}

/// A QMP client on a Unix socket: greeting and `qmp_capabilities`
/// handshake, numbered requests whose replies are matched by id, events
/// delivered to a handler, per-request timeouts and a clean close. One
/// reader thread per connection; the handler runs on it and must not block.
public final class QMPClient: Sendable {
    public typealias EventHandler = @Sendable (QMPEvent) -> Void
    public typealias CloseHandler = @Sendable () -> Void

    private struct State {
        var nextID = 1
        var pending: [Int: (command: String, continuation: CheckedContinuation<JSONValue, any Error>)] = [:]
        var greeting: JSONValue?
        var greetingWaiter: CheckedContinuation<JSONValue, any Error>?
        var closed = false
        var shutDown = false
    }

    private let fd: Int32
    private let state = Mutex(State())
    private let onEvent: EventHandler
    private let onClose: CloseHandler

    /// Wraps a connected stream socket (tests use a socketpair) and starts reading.
    /// The client owns `fd` and closes it when the connection ends.
    public init(fd: Int32, onEvent: @escaping EventHandler = { _ in }, onClose: @escaping CloseHandler = {}) {
        self.fd = fd
        self.onEvent = onEvent
        self.onClose = onClose
        let reader = UncheckedBox(self)
        startThread { reader.value.readLoop() }
    }

    /// Connects to QEMU's QMP socket, retrying until `timeout` while QEMU
    /// creates it, and completes the handshake.
    public static func connect(path: String, timeout: Double = 10, onEvent: @escaping EventHandler = { _ in },
                               onClose: @escaping CloseHandler = {}) async throws -> QMPClient {
        let deadline = Clock.monotonic() + timeout
        var lastError = ""
        while true {
            switch connectUnix(path) {
            case .success(let fd):
                let c = QMPClient(fd: fd, onEvent: onEvent, onClose: onClose)
                do {
                    try await c.handshake(timeout: max(1, deadline - Clock.monotonic()))
                    return c
                } catch {
                    c.close()
                    throw error
                }
            case .failure(let e):
                lastError = e.description
            }
            if Clock.monotonic() >= deadline { throw QMPClientError.connect("\(path): \(lastError)") }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Waits for the greeting and leaves capabilities negotiation mode.
    public func handshake(timeout: Double = 10) async throws {
        let timer = Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
            self?.failGreeting(QMPClientError.timeout("greeting"))
        }
        defer { timer.cancel() }
        _ = try await withCheckedThrowingContinuation { (k: CheckedContinuation<JSONValue, any Error>) in
            let ready: Result<JSONValue, any Error>? = state.withLock { s in
                if let g = s.greeting { return .success(g) }
                if s.closed { return .failure(QMPClientError.closed) }
                s.greetingWaiter = k
                return nil
            }
            if let ready { k.resume(with: ready) }
        }
        _ = try await execute("qmp_capabilities", timeout: timeout)
    }

    /// QEMU's version from the greeting, e.g. "7.2.22".
    public var qemuVersion: String? {
        state.withLock { s in
            guard let q = s.greeting?["version"]?["qemu"] else { return nil }
            guard let ma = q["major"]?.intValue, let mi = q["minor"]?.intValue, let mc = q["micro"]?.intValue else { return nil }
            return "\(ma).\(mi).\(mc)"
        }
    }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Runs a command and returns its `return` value; QMP errors throw `QMPError`.
    @discardableResult
    public func execute(_ command: String, arguments: JSONValue? = nil, timeout: Double = 10) async throws -> JSONValue {
        let id = state.withLock { s -> Int in defer { s.nextID += 1 }; return s.nextID }
        let timer = Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
            if !Task.isCancelled { self?.fail(id: id, QMPClientError.timeout(command)) }
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { (k: CheckedContinuation<JSONValue, any Error>) in
            let closed = state.withLock { s -> Bool in
                if s.closed { return true }
                s.pending[id] = (command, k)
                return false
            }
            if closed { k.resume(throwing: QMPClientError.closed); return }
            do {
                try Files.writeAll(fd, QMPCodec.encode(command: command, arguments: arguments, id: id), what: "QMP write")
            } catch {
                fail(id: id, QMPClientError.closed)
            }
        }
    }

    /// Ends the connection: pending requests fail with `.closed`, the close
    /// handler runs once, and the socket is closed by the reader thread.
    public func close() {
        let first = state.withLock { s -> Bool in
            if s.shutDown { return false }
            s.shutDown = true
            return true
        }
        if first { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func fail(id: Int, _ error: any Error) {
        let k = state.withLock { $0.pending.removeValue(forKey: id) }
        k?.continuation.resume(throwing: error)
    }

    private func failGreeting(_ error: any Error) {
        let k = state.withLock { s -> CheckedContinuation<JSONValue, any Error>? in
            defer { s.greetingWaiter = nil }
            return s.greetingWaiter
        }
        k?.resume(throwing: error)
    }

    private func readLoop() {
        var lines = LineBuffer()
        var buf = [UInt8](repeating: 0, count: 65536)
        loop: while true {
            let n = (try? buf.withUnsafeMutableBytes { try FileDescriptor(rawValue: fd).read(into: $0, what: "QMP read") }) ?? -1
            if n <= 0 { break }
            let got: [[UInt8]]
            do { got = try lines.feed(buf[0..<n]) } catch { break }
            for line in got {
                guard let msg = try? QMPCodec.decode(line) else { continue }
                dispatch(msg)
            }
        }
        let (pending, waiter) = state.withLock { s in
            s.closed = true
            defer { s.pending = [:]; s.greetingWaiter = nil }
            return (s.pending, s.greetingWaiter)
        }
        Glibc.close(fd)
        for (_, p) in pending { p.continuation.resume(throwing: QMPClientError.closed) }
        waiter?.resume(throwing: QMPClientError.closed)
        onClose()
    }

    private func dispatch(_ msg: QMPMessage) {
        switch msg {
        case .greeting(let g):
            let k = state.withLock { s -> CheckedContinuation<JSONValue, any Error>? in
                s.greeting = g
                defer { s.greetingWaiter = nil }
                return s.greetingWaiter
            }
            k?.resume(returning: g)
        case .reply(let id, let v):
            if let id, let p = state.withLock({ $0.pending.removeValue(forKey: id) }) { p.continuation.resume(returning: v) }
        case .error(let id, let e):
            if let id, let p = state.withLock({ $0.pending.removeValue(forKey: id) }) { p.continuation.resume(throwing: e) }
        case .event(let e):
            onEvent(e)
        }
    }
}



struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

