@testable import Panel

/// Fuzz target `websocket`: any bytes as what a browser sends on the
/// panel's console WebSocket, after a first byte that picks the decoder's
/// settings, how the bytes arrive (whole or in pieces) and whether whole
/// frames come first (to push the buffer past its compaction point). Checked:
/// nothing traps; the frames and the refusal are the same however the bytes
/// arrive; the frames decoded, encoded again as a client would, decode to
/// the same frames; no frame is larger than the limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
    guard let settings = bytes.first else { return 0 }
    var stream = Array(bytes.dropFirst())
    let requireMask = settings & 1 == 0
    let maxPayload = settings & 2 == 0 ? WebSocket.Decoder.rfbMaxPayload : 300
    // after a filler of whole frames, the decoder's buffer is past the point
    // where it drops what it has read
    // (one input in four: a filler is most of the work)
    var filler: [UInt8] = []
    var fillerFrames = 0
    if settings & 0x0c == 0x0c {
        let frame = WebSocket.encode(.init(opcode: .binary, payload: [UInt8](repeating: 0x42, count: min(maxPayload, 4096))),
                                     mask: requireMask ? [9, 8, 7, 6] : nil)
        while filler.count <= 65536 { filler += frame; fillerFrames += 1 }
    }
    stream = filler + stream

    let (frames, error) = decode([stream], requireMask: requireMask, maxPayload: maxPayload)
    var pieces: [[UInt8]] = []
    var at = 0, step = Int(settings >> 3) + 1
    while at < stream.count {
        let end = min(at + step + (at == 0 ? filler.count : 0), stream.count)
        pieces.append(Array(stream[at..<end]))
        at = end
        step = step * 7 % 31 + 1
    }
    let (pieceFrames, pieceError) = decode(pieces, requireMask: requireMask, maxPayload: maxPayload)
    guard frames == pieceFrames, error == pieceError else {
        fatalError("frames depend on how the bytes arrive: \(frames.count) \(String(describing: error)) vs \(pieceFrames.count) \(String(describing: pieceError))")
    }
    for f in frames where f.payload.count > maxPayload { fatalError("a frame of \(f.payload.count) bytes passed the limit \(maxPayload)") }

    let mask: [UInt8] = [settings, 0x5a, ~settings, 0xa5]
    let fuzzed = Array(frames.dropFirst(fillerFrames))
    let wire = fuzzed.map { WebSocket.encode($0, mask: mask) }
    let (again, againError) = decode(wire, requireMask: requireMask, maxPayload: maxPayload)
    guard again == fuzzed, againError == nil else { fatalError("frames change through encoding: \(String(describing: againError))") }

    let key = String(decoding: bytes.prefix(64), as: UTF8.self)
    guard WebSocket.acceptKey(key).utf8.count == 28 else { fatalError("accept key of the wrong length") }
    let b64 = WebSocket.base64(Array(bytes.prefix(200)))
    guard WebSocket.base64DecodedLength(b64) == min(bytes.count, 200) else { fatalError("base64 length disagrees") }
    _ = WebSocket.base64DecodedLength(key)
    return 0
}

/// Every frame of the pieces, fed in turn, and the refusal that stopped them.
private func decode(_ pieces: [[UInt8]], requireMask: Bool, maxPayload: Int) -> ([WebSocket.Frame], WebSocket.ProtocolError?) {
    var d = WebSocket.Decoder(maxPayload: maxPayload, requireMask: requireMask)
    var frames: [WebSocket.Frame] = []
    for p in pieces {
        d.append(p)
        do {
            while let f = try d.next() { frames.append(f) }
        } catch {
            return (frames, error)
        }
    }
    return (frames, nil)
}
