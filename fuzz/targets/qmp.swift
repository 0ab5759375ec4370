#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
@testable import QEMU

/// Fuzz target `qmp`: any bytes as what QEMU's QMP monitor (or the guest
/// agent, which frames the same way) sends: split into reads at points the
/// input chooses for the daemon's line buffer and codec, and through a pipe
/// for the line reader of the one-shot QMP call and of the guest agent (a
/// reply matched by id, a `guest-sync` answered). Checked: nothing traps;
/// the lines are the same however the stream is split; a decoded message's
/// JSON, sent back inside a command, reads back the same.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQMP(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
    guard let split = bytes.first else { return 0 }
    let stream = bytes.dropFirst()

    var whole = LineBuffer()
    whole.maxLine = 1 << 12
    var pieces = LineBuffer()
    pieces.maxLine = 1 << 12
    let wholeLines = Result { () throws(QEMUError) in try whole.feed(stream) }
    var pieceLines: [[UInt8]] = []
    var pieceError: QEMUError?
    var at = stream.startIndex
    var step = Int(split % 13) + 1
    while at < stream.endIndex && pieceError == nil {
        let end = min(at + step, stream.endIndex)
        do { pieceLines += try pieces.feed(stream[at..<end]) } catch { pieceError = error }
        at = end
        step = step * 5 % 17 + 1
    }
    switch wholeLines {
    case .success(let lines):
        // fed in pieces, an over-long line can only be refused earlier
        if pieceError == nil && lines != pieceLines { fatalError("lines depend on how the stream is split") }
        if pieceError != nil && !lines.starts(with: pieceLines) { fatalError("lines before a refusal differ") }
    case .failure:
        // what is left over at the end is the same however it came
        guard pieceError != nil else { fatalError("a refused stream was accepted in pieces") }
    }

    for line in pieceLines {
        guard let message = try? QMPCodec.decode(line) else { continue }
        let value: JSONValue
        switch message {
        case .greeting(let g): value = g
        case .reply(_, let r):
            value = r
            if let interfaces = r.arrayValue { _ = GuestAgent.parseAddresses(interfaces) }
        case .error(_, let e): value = .string(e.description)
        case .event(let e): value = e.data
        }
        let command = QMPCodec.encode(command: "x", arguments: value, id: 7)
        guard command.last == 0x0a, let back = try? JSONValue.parse(Array(command.dropLast(2))),
              back["id"]?.intValue == 7, let args = back["arguments"]
        else { fatalError("a command does not read back: \(String(decoding: command, as: UTF8.self))") }
        guard args.serialized() == value.serialized() else { fatalError("arguments changed: \(value) → \(args)") }
    }

    if split & 0x80 != 0 { readThroughPipe(Array(stream.prefix(60_000))) }  // half the inputs: it is most of the work
    return 0
}

/// The bytes as the one-shot QMP call and the guest agent read them: a reply
/// awaited by id, a `guest-sync` answer awaited, then every line left.
private func readThroughPipe(_ bytes: [UInt8]) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { fatalError("pipe: \(errno)") }
    bytes.withUnsafeBytes { _ = write(fds[1], $0.baseAddress, $0.count) }  // fits in the pipe: one write
    close(fds[1])
    var reader = JSONLineReader(fd: fds[0])
    let deadline = Clock.monotonic() + 5
    _ = reader.reply(to: 1, deadline: deadline)
    _ = reader.synced(to: 7, deadline: deadline)
    while reader.next(deadline: deadline) != nil {}
    close(fds[0])
}
