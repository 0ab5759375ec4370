import Config
import Panel
import Platform
import Synchronization
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios vm terminal NAME`: the VM's serial console, both ways, in this
/// terminal (the panel's /terminal page over the same WebSocket). The
/// terminal is raw while connected; Ctrl-] leaves. Piped input is sent as
/// it comes, and the guest's output is printed until the console closes.
struct VMTerminal: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "terminal",
        abstract: "Attach this terminal to a running VM's serial console (Ctrl-] to leave).")
    @OptionGroup var o: ClientOptions
    @Argument var name: String

    /// Ctrl-], as telnet and virsh use it.
    static let escape: UInt8 = 0x1d

    func run() throws {
        let (stream, early) = try o.client().openWebSocket(try vmPath(name) + "/terminal")
        // a daemon that goes away mid-write is an error to report, not a signal
        signal(SIGPIPE, SIG_IGN)
        let interactive = isatty(0) == 1
        let saved = interactive ? RawTerminal.enter() : nil
        if interactive {
            FileHandleWriter.stderr("Connected to \(name)'s serial console. Ctrl-] leaves.\r\n")
        }
        defer {
            if interactive { FileHandleWriter.stderr("\r\nLeft \(name)'s serial console.\r\n") }
            if let saved { RawTerminal.leave(saved) }
        }
        let ended = Mutex<String?>(nil)
        let done = DispatchLikeSignal()
        // the guest's output, as it comes
        _ = startThread {
            var decoder = WebSocket.Decoder(requireMask: false)
            decoder.append(early)
            var buf = [UInt8](repeating: 0, count: 65536)
            outer: while true {
                do {
                    while let frame = try decoder.next() {
                        switch frame.opcode {
                        case .binary, .text, .continuation:
                            try? Files.writeAll(1, frame.payload, what: "write stdout")
                        case .close:
                            ended.withLock { $0 = $0 ?? "the daemon closed the console" }
                            break outer
                        case .ping:
                            try? stream.send(WebSocket.encode(.init(opcode: .pong, payload: frame.payload), mask: Self.mask()))
                        default: break
                        }
                    }
                } catch {
                    ended.withLock { $0 = $0 ?? "the daemon sent a bad frame: \(error)" }
                    break
                }
                var n = 0
                var failure: NetError?
                buf.withUnsafeMutableBytes { p in
                    do throws(NetError) { n = try stream.receive(p) } catch { failure = error }
                }
                if case .timedOut? = failure { continue }
                if let failure {
                    ended.withLock { $0 = $0 ?? "\(failure)" }
                    break
                }
                if n == 0 { break }
                buf.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
            done.fire()
        }
        // what is typed (or piped), as it comes
        _ = startThread {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(0, &buf, buf.count)
                if n < 0 && currentErrno() == EINTR { continue }
                if n <= 0 { break }  // end of input: keep showing the output
                var chunk = Array(buf[0..<n])
                if interactive, let i = chunk.firstIndex(of: Self.escape) {
                    chunk = Array(chunk[..<i])
                    if !chunk.isEmpty { try? stream.send(WebSocket.encode(.init(opcode: .binary, payload: chunk), mask: Self.mask())) }
                    try? stream.send(WebSocket.encode(.init(opcode: .close, payload: WebSocket.closePayload(1000)), mask: Self.mask()))
                    ended.withLock { $0 = $0 ?? "" }
                    done.fire()
                    return
                }
                do {
                    try stream.send(WebSocket.encode(.init(opcode: .binary, payload: chunk), mask: Self.mask()))
                } catch {
                    done.fire()
                    return
                }
            }
        }
        done.wait()
        stream.shutdown()
        if let why = ended.withLock({ $0 }), !why.isEmpty, why != "the daemon closed the console" {
            if let saved { RawTerminal.leave(saved) }
            throw CLIError("\(name): \(why)")
        }
    }

    static func mask() -> [UInt8] { (0..<4).map { _ in UInt8.random(in: 0...255) } }
}

/// A one-shot signal between threads.
final class DispatchLikeSignal: @unchecked Sendable {
    private let fired = Mutex(false)
    func fire() { fired.withLock { $0 = true } }
    func wait() { while !fired.withLock({ $0 }) { usleep(20_000) } }
}

/// The controlling terminal in raw mode while attached, restored after.
enum RawTerminal {
    static func enter() -> termios? {
        var t = termios()
        guard tcgetattr(0, &t) == 0 else { return nil }
        let saved = t
        cfmakeraw(&t)
        _ = tcsetattr(0, TCSANOW, &t)
        return saved
    }

    static func leave(_ saved: termios) {
        var t = saved
        _ = tcsetattr(0, TCSANOW, &t)
    }
}

enum FileHandleWriter {
    static func stderr(_ s: String) { try? Files.writeAll(2, Array(s.utf8), what: "write stderr") }
}
