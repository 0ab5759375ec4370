/// The `Transfer-Encoding: chunked` body of an HTTP/1.1 answer, decoded as
/// its bytes arrive: a pure state machine, fed buffers of any size split at
/// any byte, that says which ranges of each buffer are body. Nothing the
/// server sends is trusted: a size line is at most `maxLine` bytes, a chunk
/// may not be larger than what remains of `limit`, trailers are bounded,
/// every CRLF is required. The body itself is never copied or kept.
public struct ChunkedDecoder: Sendable {
    /// Why the encoding is refused, or where it stopped short.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// A chunk-size line (or a trailer line) longer than `maxLine`.
        case lineTooLong
        /// A chunk-size line that is not 1 to 16 hex digits (then optional
        /// `;extensions`) or whose value does not fit 63 bits; the line.
        case badSize(String)
        /// Chunk data not followed by CRLF.
        case missingCRLF
        /// A trailer line that does not end with CRLF, or trailers longer than `maxTrailers`.
        case badTrailer
        /// A chunk of this size would make the body larger than the limit.
        case tooLarge(Int64)
        /// The stream ended before a chunk size.
        case truncatedBeforeSize
        /// The stream ended inside a chunk's data.
        case truncatedInChunk
        /// The stream ended between a chunk's data and its CRLF.
        case truncatedAfterChunk
        /// The stream ended in the trailers (after the last chunk).
        case truncatedInTrailers

        public var description: String {
            switch self {
            case .lineTooLong: "bad chunked encoding: chunk-size line too long"
            case .badSize(let line): "bad chunked encoding: chunk size '\(clipped(line))'"
            case .missingCRLF: "bad chunked encoding: no CRLF after a chunk"
            case .badTrailer: "bad chunked encoding: malformed trailers"
            case .tooLarge(let size): "bad chunked encoding: a chunk of \(size) bytes is larger than the body may be"
            case .truncatedBeforeSize: "truncated before a chunk size"
            case .truncatedInChunk: "truncated: a chunk ended early"
            case .truncatedAfterChunk: "truncated after a chunk"
            case .truncatedInTrailers: "truncated in the trailers"
            }
        }
    }

    /// Longest chunk-size line (the size, then optional extensions), and
    /// longest trailer line, without its CRLF.
    public static let maxLine = 1024
    /// Most bytes of trailers, CRLFs included.
    public static let maxTrailers = 16 << 10

    private enum State: Sendable, Equatable {
        /// Reading a chunk-size line (kept in `line`).
        case size
        /// A CR ended the size line; LF must follow.
        case sizeLF
        /// This many bytes of chunk data still to come.
        case data(Int64)
        case dataCR
        case dataLF
        /// In the trailers: a line of `lineLength` bytes so far.
        case trailer
        case trailerLF
        case done
    }

    /// Most bytes the whole body may have.
    public let limit: Int64
    /// Body bytes so far.
    public private(set) var total: Int64 = 0
    /// Bytes after the end of the body (ignored; the connection is closed).
    public private(set) var excess = 0
    private var state = State.size
    private var line: [UInt8] = []
    private var lineLength = 0
    private var trailerBytes = 0

    public init(limit: Int64 = .max) { self.limit = limit }

    /// Whether the last chunk and the trailers have been read.
    public var isFinished: Bool { state == .done }

    /// Decodes the next bytes of the stream: the ranges of `input` that are
    /// body, in order. When it throws, none of `input` counts as body.
    public mutating func feed(_ input: UnsafeRawBufferPointer) throws(Failure) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var i = 0
        let n = input.count
        while i < n {
            switch state {
            case .data(let left):
                let take = Int(min(left, Int64(n - i)))
                ranges.append(i..<i + take)
                i += take
                total += Int64(take)
                state = left == Int64(take) ? .dataCR : .data(left - Int64(take))
                continue
            case .done:
                excess += n - i
                return ranges
            default:
                break
            }
            let byte = input[i]
            i += 1
            switch state {
            case .size:
                if byte == 13 { state = .sizeLF; continue }
                guard byte != 10 else { throw .badSize(String(decoding: line, as: UTF8.self)) }
                guard line.count < Self.maxLine else { throw .lineTooLong }
                line.append(byte)
            case .sizeLF:
                guard byte == 10 else { throw .badSize(String(decoding: line + [13, byte], as: UTF8.self)) }
                let size = try Self.chunkSize(line)
                line.removeAll(keepingCapacity: true)
                if size == 0 {
                    state = .trailer
                    lineLength = 0
                } else {
                    guard size <= limit - total else { throw .tooLarge(size) }
                    state = .data(size)
                }
            case .dataCR:
                guard byte == 13 else { throw .missingCRLF }
                state = .dataLF
            case .dataLF:
                guard byte == 10 else { throw .missingCRLF }
                state = .size
            case .trailer:
                trailerBytes += 1
                guard trailerBytes <= Self.maxTrailers else { throw .badTrailer }
                if byte == 13 { state = .trailerLF; continue }
                guard byte != 10 else { throw .badTrailer }
                lineLength += 1
                guard lineLength <= Self.maxLine else { throw .lineTooLong }
            case .trailerLF:
                trailerBytes += 1
                guard byte == 10 else { throw .badTrailer }
                if lineLength == 0 { state = .done } else { state = .trailer; lineLength = 0 }
            case .data, .done:
                break
            }
        }
        return ranges
    }

    /// The same for a byte array: the body's slices of it.
    public mutating func feed(_ bytes: [UInt8]) throws(Failure) -> [ArraySlice<UInt8>] {
        let ranges = try bytes.withUnsafeBytes { p in Result { () throws(Failure) in try feed(p) } }.get()
        return ranges.map { bytes[$0] }
    }

    /// The stream ended: fine when the body was whole, else where it stopped.
    public func finish() throws(Failure) {
        switch state {
        case .done: return
        case .size, .sizeLF: throw .truncatedBeforeSize
        case .data: throw .truncatedInChunk
        case .dataCR, .dataLF: throw .truncatedAfterChunk
        case .trailer, .trailerLF: throw .truncatedInTrailers
        }
    }

    /// The value of a chunk-size line: hex digits (spaces and tabs around
    /// them allowed), then optional `;extensions`, which are ignored.
    static func chunkSize(_ line: [UInt8]) throws(Failure) -> Int64 {
        let digits = line.prefix { $0 != UInt8(ascii: ";") }.drop { $0 == 32 || $0 == 9 }
        let trimmed = digits.reversed().drop { $0 == 32 || $0 == 9 }.reversed()
        var value: Int64 = 0
        guard (1...16).contains(trimmed.count) else { throw .badSize(String(decoding: line, as: UTF8.self)) }
        for c in trimmed {
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw .badSize(String(decoding: line, as: UTF8.self))
            }
            guard value <= (Int64.max - Int64(d)) / 16 else { throw .badSize(String(decoding: line, as: UTF8.self)) }
            value = value * 16 + Int64(d)
        }
        return value
    }
}
