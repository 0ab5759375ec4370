import Platform

/// Fuzz target `chunked`: any bytes as the `Transfer-Encoding: chunked` body
/// of an image server's answer, through the HTTP client's `ChunkedDecoder`,
/// whole, in pieces and (when short) a byte at a time, with a limit of half
/// the input for odd lengths. Checked: nothing traps; the body, the failure,
/// whether it finished and the bytes after its end are the same however the
/// stream is split; the body is never over the limit; the body chunked again
/// decodes to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChunked(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
    let limit: Int64 = size % 2 == 1 ? Int64(size / 2) : .max

    let whole = decode([bytes], limit: limit)
    var pieces: [[UInt8]] = []
    var at = 0, step = size % 13 + 1
    while at < size {
        pieces.append(Array(bytes[at..<min(at + step, size)]))
        at += step
        step = step * 5 % 17 + 1
    }
    var splits = [decode(pieces, limit: limit)]
    if size <= 512 { splits.append(decode(bytes.map { [$0] }, limit: limit)) }
    for split in splits {
        // a failing feed returns none of its buffer's body, so the body
        // before a failure depends on where the buffers end
        guard split.failure == whole.failure, split.finished == whole.finished,
              whole.failure != nil || (split.body == whole.body && split.excess == whole.excess)
        else { fatalError("the stream decodes differently in pieces: \(whole) vs \(split)") }
    }
    guard Int64(whole.body.count) <= limit else { fatalError("a body of \(whole.body.count) bytes passed the limit \(limit)") }
    if whole.failure == nil {
        guard whole.finished else { fatalError("finish() accepted an unfinished stream") }
        var again: [UInt8] = []
        var rest = whole.body[...]
        var n = size % 7 + 1
        while !rest.isEmpty {
            let chunk = rest.prefix(n)
            again += Array(String(chunk.count, radix: 16).utf8) + [13, 10] + chunk + [13, 10]
            rest = rest.dropFirst(n)
            n = n * 3 % 11 + 1
        }
        again += Array("0\r\n\r\n".utf8)
        let back = decode([again], limit: .max)
        guard back.failure == nil, back.body == whole.body else { fatalError("the body chunked again decodes differently: \(back)") }
    }
    return 0
}

/// The stream fed in these pieces: the body, the failure, whether it
/// finished, and the bytes after its end.
private func decode(_ pieces: [[UInt8]], limit: Int64)
    -> (body: [UInt8], failure: ChunkedDecoder.Failure?, finished: Bool, excess: Int) {
    var d = ChunkedDecoder(limit: limit)
    var body: [UInt8] = []
    do throws(ChunkedDecoder.Failure) {
        for p in pieces { for slice in try d.feed(p) { body += slice } }
        guard d.total == Int64(body.count) else { fatalError("total \(d.total) is not the \(body.count) bytes returned") }
        try d.finish()
        return (body, nil, d.isFinished, d.excess)
    } catch {
        return (body, error, d.isFinished, d.excess)
    }
}
