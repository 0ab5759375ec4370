#if canImport(Glibc)
import Glibc
#endif
import CTLS
import Platform

/// RFC 6455 framing: a pure codec (server side: client frames must be
/// masked, server frames are not).
public enum WebSocket {
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    public enum Opcode: UInt8, Sendable {
        case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10
        var isControl: Bool { rawValue & 0x8 != 0 }
    }

    public struct Frame: Sendable, Equatable {
        public var fin: Bool
        public var opcode: Opcode
        public var payload: [UInt8]
        public init(fin: Bool = true, opcode: Opcode, payload: [UInt8]) {
            self.fin = fin; self.opcode = opcode; self.payload = payload
        }
    }

    /// A protocol violation, with the close code to send.
    public struct ProtocolError: Error, Sendable, Equatable {
        public var code: UInt16
        public var message: String
    }

    /// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
    public static func acceptKey(_ key: String) -> String {
        let input = Array((key.trimmingSpaces + guid).utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        input.withUnsafeBytes { cb_sha1($0.baseAddress, $0.count, &digest) }
        return base64(digest)
    }

    /// Encodes one frame; `mask` (4 bytes) for client frames.
    public static func encode(_ frame: Frame, mask: [UInt8]? = nil) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(frame.payload.count + 14)
        out.append((frame.fin ? 0x80 : 0) | frame.opcode.rawValue)
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        let n = frame.payload.count
        if n < 126 {
            out.append(maskBit | UInt8(n))
        } else if n <= 0xffff {
            out.append(maskBit | 126)
            out.append(UInt8(n >> 8)); out.append(UInt8(n & 0xff))
        } else {
            out.append(maskBit | 127)
            for i in (0..<8).reversed() { out.append(UInt8((UInt64(n) >> (UInt64(i) * 8)) & 0xff)) }
        }
        if let mask {
            out.append(contentsOf: mask)
            for (i, b) in frame.payload.enumerated() { out.append(b ^ mask[i & 3]) }
        } else {
            out.append(contentsOf: frame.payload)
        }
        return out
    }

    public static func closePayload(_ code: UInt16, _ reason: String = "") -> [UInt8] {
        [UInt8(code >> 8), UInt8(code & 0xff)] + Array(reason.utf8.prefix(120))
    }

    /// Incremental decoder of client frames.
    public struct Decoder: Sendable {
        private var buffer: [UInt8] = []
        private var start = 0
        public var maxPayload: Int
        public var requireMask: Bool
        private var inFragmentedMessage = false

        /// RFB from a browser is key and pointer events and the odd
        /// clipboard text: 1 MiB is plenty, and the most a client can make
        /// the server hold for one frame.
        public static let rfbMaxPayload = 1 << 20

        public init(maxPayload: Int = rfbMaxPayload, requireMask: Bool = true) {
            self.maxPayload = maxPayload
            self.requireMask = requireMask
        }

        public mutating func append(_ bytes: UnsafeRawBufferPointer) {
            if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
            buffer.append(contentsOf: bytes)
        }

        public mutating func append(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { append($0) }
        }

        /// The next complete frame, nil when more bytes are needed.
        public mutating func next() throws(ProtocolError) -> Frame? {
            let avail = buffer.count - start
            guard avail >= 2 else { return nil }
            let b0 = buffer[start], b1 = buffer[start + 1]
            guard b0 & 0x70 == 0 else { throw ProtocolError(code: 1002, message: "reserved bits set") }
            guard let opcode = Opcode(rawValue: b0 & 0x0f) else { throw ProtocolError(code: 1002, message: "unknown opcode") }
            let fin = b0 & 0x80 != 0
            let masked = b1 & 0x80 != 0
            if requireMask && !masked { throw ProtocolError(code: 1002, message: "client frames must be masked") }
            var len = UInt64(b1 & 0x7f)
            var pos = start + 2
            if len == 126 {
                guard avail >= 4 else { return nil }
                len = UInt64(buffer[pos]) << 8 | UInt64(buffer[pos + 1]); pos += 2
            } else if len == 127 {
                guard avail >= 10 else { return nil }
                len = 0
                for i in 0..<8 { len = len << 8 | UInt64(buffer[pos + i]) }
                pos += 8
                if len >> 63 != 0 { throw ProtocolError(code: 1002, message: "bad length") }
            }
            if opcode.isControl {
                guard fin, len <= 125 else { throw ProtocolError(code: 1002, message: "bad control frame") }
            }
            guard len <= UInt64(maxPayload) else { throw ProtocolError(code: 1009, message: "frame too large") }
            var mask: [UInt8]? = nil
            if masked {
                guard buffer.count - pos >= 4 else { return nil }
                mask = Array(buffer[pos..<pos + 4]); pos += 4
            }
            guard buffer.count - pos >= Int(len) else { return nil }
            var payload = Array(buffer[pos..<pos + Int(len)])
            if let mask { for i in payload.indices { payload[i] ^= mask[i & 3] } }
            start = pos + Int(len)
            if start > 65536 && start * 2 > buffer.count {
                buffer.removeFirst(start); start = 0
            }
            switch opcode {
            case .continuation:
                guard inFragmentedMessage else { throw ProtocolError(code: 1002, message: "unexpected continuation") }
                if fin { inFragmentedMessage = false }
            case .text, .binary:
                guard !inFragmentedMessage else { throw ProtocolError(code: 1002, message: "expected continuation") }
                if !fin { inFragmentedMessage = true }
            default: break
            }
            return Frame(fin: fin, opcode: opcode, payload: payload)
        }
    }

    static let b64 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func base64(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i + 3 <= data.count {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out += [b64[Int(n >> 18 & 63)], b64[Int(n >> 12 & 63)], b64[Int(n >> 6 & 63)], b64[Int(n & 63)]]
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let n = UInt32(data[i]) << 16
            out += [b64[Int(n >> 18 & 63)], b64[Int(n >> 12 & 63)], 61, 61]
        } else if rest == 2 {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out += [b64[Int(n >> 18 & 63)], b64[Int(n >> 12 & 63)], b64[Int(n >> 6 & 63)], 61]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Length in bytes of a base64 text's decoded value, nil when invalid.
    static func base64DecodedLength(_ s: String) -> Int? {
        let u = Array(s.utf8)
        guard u.count % 4 == 0 else { return nil }
        var pad = 0
        for (i, c) in u.enumerated() {
            if c == 61 { guard i >= u.count - 2 else { return nil }; pad += 1; continue }
            guard pad == 0, b64.contains(c) else { return nil }
        }
        return u.count / 4 * 3 - pad
    }
}

/// The raw connection after a 101 response: a socket to the client (MHD
/// does TLS behind it), bytes already read past the request, and `close`.
public final class WebSocketConnection: @unchecked Sendable {
    public let fd: Int32
    public let leftover: [UInt8]
    private let closer: () -> Void
    private var closed = false
    init(fd: Int32, leftover: [UInt8], close: @escaping () -> Void) {
        self.fd = fd; self.leftover = leftover; self.closer = close
    }
    public func close() {
        if closed { return }
        closed = true
        closer()
    }
}

/// Owns a file descriptor until someone takes it.
final class OwnedFD: @unchecked Sendable {
    private let lock = Lock()
    private var fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    func take() -> Int32 { lock.withLock { let f = fd; fd = -1; return f } }
    deinit { if fd >= 0 { Glibc.close(fd) } }
}

/// Bridges a WebSocket (binary frames) and a stream socket (the VM's VNC
/// server) on a dedicated thread, until either side closes.
enum WebSocketBridge {
    static func start(_ ws: WebSocketConnection, peer: Int32) {
        let job = BridgeJob(ws: ws, peer: peer)
        if !startThread({ job.run() }) {
            Glibc.close(peer)
            ws.close()
        }
    }

    final class BridgeJob: @unchecked Sendable {
        let ws: WebSocketConnection
        let peer: Int32
        init(ws: WebSocketConnection, peer: Int32) { self.ws = ws; self.peer = peer }

        func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { p in Glibc.send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL)) }
                if n < 0 {
                    if currentErrno() == EINTR { continue }
                    if currentErrno() == EAGAIN {
                        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&p, 1, 1000)
                        continue
                    }
                    return false
                }
                off += n
            }
            return true
        }

        func run() {
            defer {
                Glibc.close(peer)
                ws.close()
            }
            var decoder = WebSocket.Decoder()
            decoder.append(ws.leftover)
            var buf = [UInt8](repeating: 0, count: 65536)
            var fds = [pollfd(fd: ws.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: peer, events: Int16(POLLIN), revents: 0)]
            func drain() -> Bool {
                while true {
                    let frame: WebSocket.Frame?
                    do { frame = try decoder.next() } catch {
                        _ = send(ws.fd, WebSocket.encode(.init(opcode: .close, payload: WebSocket.closePayload(error.code, error.message))))
                        return false
                    }
                    guard let frame else { return true }
                    switch frame.opcode {
                    case .binary, .text, .continuation:
                        if !frame.payload.isEmpty && !send(peer, frame.payload) { return false }
                    case .ping:
                        if !send(ws.fd, WebSocket.encode(.init(opcode: .pong, payload: frame.payload))) { return false }
                    case .pong:
                        break
                    case .close:
                        let code = frame.payload.count >= 2 ? Array(frame.payload.prefix(2)) : WebSocket.closePayload(1000)
                        _ = send(ws.fd, WebSocket.encode(.init(opcode: .close, payload: code)))
                        return false
                    }
                }
            }
            if !drain() { return }
            while true {
                fds[0].revents = 0; fds[1].revents = 0
                let r = poll(&fds, 2, -1)
                if r < 0 { if currentErrno() == EINTR { continue }; return }
                if fds[0].revents != 0 {
                    let n = buf.withUnsafeMutableBytes { Glibc.recv(ws.fd, $0.baseAddress, $0.count, 0) }
                    if n < 0 && (currentErrno() == EINTR || currentErrno() == EAGAIN) { continue }
                    if n <= 0 { return }
                    buf.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    if !drain() { return }
                }
                if fds[1].revents != 0 {
                    let n = buf.withUnsafeMutableBytes { Glibc.recv(peer, $0.baseAddress, $0.count, 0) }
                    if n < 0 && (currentErrno() == EINTR || currentErrno() == EAGAIN) { continue }
                    if n <= 0 {
                        _ = send(ws.fd, WebSocket.encode(.init(opcode: .close, payload: WebSocket.closePayload(1000, "console closed"))))
                        return
                    }
                    if !send(ws.fd, WebSocket.encode(.init(opcode: .binary, payload: Array(buf[0..<n])))) { return }
                }
            }
        }
    }

    /// Connects to a Unix stream socket. Returns the fd or throws.
    static func connectUnix(_ path: String) throws -> Int32 {
        try Platform.connectUnix(path).get()
    }
}
