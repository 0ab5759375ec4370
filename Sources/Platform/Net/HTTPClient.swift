#if canImport(Glibc)
import Glibc
#endif

/// The HTTP/1.1 client: one request per connection, plain or TLS, with
/// redirects followed when asked (never from https to http), every connect,
/// read and write bounded by `timeout` and the whole exchange by a
/// `Deadline`. Bodies stream through one reusable buffer (`readSize`), so
/// memory stays bounded whatever the server sends; `fetch` is the buffered
/// convenience for small answers.
public struct HTTPClient: Sendable {
    /// Which server certificates https accepts.
    public var trust: TLSTrust
    /// Longest wait for a connect, a read or a write, in seconds.
    public var timeout: Double
    /// How many redirects GET and HEAD follow (0: a redirect is the answer).
    public var redirects: Int
    public var userAgent: String
    /// Bytes asked of the socket per read: the body's slices are at most this.
    public var readSize: Int

    public init(trust: TLSTrust = .system, timeout: Double = 30, redirects: Int = 0, userAgent: String = "cloudbios",
                readSize: Int = 256 << 10) {
        self.trust = trust; self.timeout = timeout; self.redirects = redirects; self.userAgent = userAgent
        self.readSize = readSize
    }

    /// Sends `request`, follows redirects, and reads the answer's head; the
    /// body is the exchange's to read.
    public func open(_ request: HTTPRequest, deadline: Deadline = .never) throws(NetError) -> HTTPExchange {
        var request = request
        let follows = request.method == "GET" || request.method == "HEAD"
        var redirected = 0
        while true {
            let exchange = try HTTPExchange(request, client: self, deadline: deadline)
            let status = exchange.head.status
            guard follows, redirects > 0, [301, 302, 303, 307, 308].contains(status) else { return exchange }
            guard let location = exchange.head.header("location"), !location.isEmpty else {
                throw .redirectWithoutLocation(status)
            }
            guard redirected < redirects else { throw .tooManyRedirects(redirects) }
            let next = try request.url.resolving(location)
            if request.url.tls && !next.tls { throw .redirectToHTTP(next.description) }
            request.url = next
            redirected += 1
        }
    }

    /// The whole answer, its body at most `maxBody` bytes.
    public func fetch(_ request: HTTPRequest, deadline: Deadline = .never, maxBody: Int = 16 << 20) throws(NetError) -> HTTPResponse {
        let exchange = try open(request, deadline: deadline)
        let body = try exchange.readBody(limit: maxBody)
        return HTTPResponse(url: exchange.url, head: exchange.head, body: body)
    }
}

/// One request's connection once its answer's head has arrived: the head,
/// and the body still to read. The connection closes when this goes.
public final class HTTPExchange {
    /// Where the answer came from.
    public let url: HTTPURL
    public let head: HTTPResponseHead
    private let method: String
    private let connection: Connection
    /// The read buffer: body bytes already read sit at `pending`.
    private let buffer: UnsafeMutableRawBufferPointer
    private var pending: Range<Int>
    private var bodyRead = false
    /// The body was read whole (by its length) and nothing came after it.
    private var endedClean = false

    init(_ request: HTTPRequest, client: HTTPClient, deadline: Deadline, reusing: Connection? = nil, keepAlive: Bool = false) throws(NetError) {
        url = request.url
        method = request.method
        let requestHead = try request.encodedHead(userAgent: client.userAgent, keepAlive: keepAlive)
        if let reusing {
            reusing.deadline = deadline
            connection = reusing
        } else {
            connection = try Connection(url: request.url, trust: client.trust, timeout: client.timeout, deadline: deadline)
        }
        buffer = .allocate(byteCount: max(client.readSize, HTTPResponseHead.maxSize + 4096), alignment: 64)
        do {
            if let f = request.bodyFile {
                try connection.send(requestHead)
                try Self.sendFile(f.path, size: f.size, connection)
            } else if !request.body.isEmpty && request.body.count <= 64 << 10 {
                // head and a small body in one write (one TLS record, one segment)
                try connection.send(requestHead + request.body)
            } else {
                try connection.send(requestHead)
                if !request.body.isEmpty { try connection.send(request.body) }
            }
            (head, pending) = try Self.readHead(connection, buffer)
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    deinit { buffer.deallocate() }

    /// The connection, for another request, once the body was read whole
    /// and nothing followed it; nil when it cannot serve again (the server
    /// closes it, or the body ran until the close).
    var reusableConnection: Connection? {
        guard endedClean, (head.header("connection") ?? "").lowercased() != "close" else { return nil }
        return connection
    }

    /// Sends the first `size` bytes of the file at `path`, a MiB at a time.
    private static func sendFile(_ path: String, size: Int64, _ c: Connection) throws(NetError) {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC) } catch { throw .bodyFile("open \(path): \(error)") }
        defer { fd.close() }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var left = size
        while left > 0 {
            let want = Int(min(Int64(chunk.count), left))
            let n: Int
            do { n = try chunk.withUnsafeMutableBytes { try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) } } catch {
                throw .bodyFile("read \(path): \(error)")
            }
            guard n > 0 else { throw .bodyFile("\(path) ended \(left) bytes early") }
            try c.send(Array(chunk[0..<n]))
            left -= Int64(n)
        }
    }

    /// Reads until a final (non-1xx) head; returns it and where the body's
    /// first bytes are in `buffer`.
    private static func readHead(_ c: Connection, _ buffer: UnsafeMutableRawBufferPointer) throws(NetError) -> (HTTPResponseHead, Range<Int>) {
        var filled = 0
        var searched = 0
        while true {
            let view = UnsafeRawBufferPointer(rebasing: buffer[0..<filled])
            if let end = HTTPResponseHead.end(in: view, from: searched) {
                let head = try HTTPResponseHead.parse(view[0..<end])
                let rest = end + 4..<filled
                guard (100..<200).contains(head.status), head.status != 101 else { return (head, rest) }
                // an interim answer (100 Continue): the real one follows
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + rest.lowerBound, byteCount: rest.count)
                filled = rest.count
                searched = 0
                continue
            }
            searched = max(0, filled - 3)
            guard filled < HTTPResponseHead.maxSize else { throw .malformedHead }
            let n = try c.receive(UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<HTTPResponseHead.maxSize]))
            if n == 0 { throw filled == 0 ? .noAnswer : .malformedHead }
            filled += n
        }
    }

    /// Streams the body to `sink`, a slice of the read buffer at a time
    /// (valid only during the call); returns its length. More than `limit`
    /// bytes fail before they reach the sink. The sink's errors end the
    /// exchange and come out as they are.
    @discardableResult
    public func readBody(limit: Int64, into sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        precondition(!bodyRead, "the body of an exchange is read once")
        bodyRead = true
        let whole = UnsafeRawBufferPointer(buffer)
        switch try head.framing(requestMethod: method) {
        case .none:
            endedClean = pending.isEmpty
            return 0
        case .length(let length):
            guard length <= limit else { throw NetError.tooLarge(limit: limit, chunk: nil) }
            var left = length
            var ready = pending
            while left > 0 {
                if ready.isEmpty {
                    let n = try connection.receive(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(min(Int64(buffer.count), left))]))
                    guard n > 0 else { throw NetError.truncated(announced: length) }
                    ready = 0..<n
                }
                let take = Int(min(Int64(ready.count), left))
                try sink(UnsafeRawBufferPointer(rebasing: whole[ready.lowerBound..<ready.lowerBound + take]))
                left -= Int64(take)
                ready = ready.lowerBound + take..<ready.upperBound
            }
            endedClean = ready.isEmpty
            return length
        case .untilClose:
            var total: Int64 = 0
            var ready = pending
            while true {
                if !ready.isEmpty {
                    total += Int64(ready.count)
                    guard total <= limit else { throw NetError.tooLarge(limit: limit, chunk: nil) }
                    try sink(UnsafeRawBufferPointer(rebasing: whole[ready]))
                }
                let n = try connection.receive(buffer)
                if n == 0 { return total }
                ready = 0..<n
            }
        case .chunked:
            var decoder = ChunkedDecoder(limit: limit)
            var ready = pending
            while true {
                let ranges: [Range<Int>]
                do throws(ChunkedDecoder.Failure) {
                    ranges = try decoder.feed(UnsafeRawBufferPointer(rebasing: whole[ready]))
                } catch {
                    if case .tooLarge(let size) = error { throw NetError.tooLarge(limit: limit, chunk: size) }
                    throw NetError.chunked(error)
                }
                for r in ranges {
                    try sink(UnsafeRawBufferPointer(rebasing: whole[ready.lowerBound + r.lowerBound..<ready.lowerBound + r.upperBound]))
                }
                if decoder.isFinished { return decoder.total }
                let n = try connection.receive(buffer)
                if n == 0 {
                    do throws(ChunkedDecoder.Failure) { try decoder.finish() } catch { throw NetError.chunked(error) }
                    return decoder.total
                }
                ready = 0..<n
            }
        }
    }

    /// The whole body, at most `limit` bytes.
    /// After `101 Switching Protocols` (a WebSocket, say): the connection
    /// itself for the new protocol, and the bytes of it that came with the
    /// head. The exchange is done with it then.
    public func switchedProtocols() -> (stream: NetStream, early: [UInt8]) {
        precondition(!bodyRead, "the connection of an exchange is taken once")
        bodyRead = true
        let early = Array(UnsafeRawBufferPointer(rebasing: buffer[pending]))
        pending = 0..<0
        return (NetStream(connection), early)
    }

    public func readBody(limit: Int) throws(NetError) -> [UInt8] {
        var body: [UInt8] = []
        do {
            try readBody(limit: Int64(limit)) { body.append(contentsOf: $0) }
        } catch let e as NetError {
            throw e
        } catch {
            preconditionFailure("appending to memory cannot fail: \(error)")
        }
        return body
    }
}

/// A connected socket, with a TLS session on it for https. Every wait is
/// bounded by the timeout and never runs past the deadline.
/// A connection after a protocol switch: bytes both ways, plain or TLS.
/// One thread may send while another receives (GnuTLS allows a sender and
/// a receiver at once); `shutdown` wakes a receiver for good.
public final class NetStream: @unchecked Sendable {
    let connection: Connection
    init(_ c: Connection) { connection = c }

    public func send(_ bytes: [UInt8]) throws(NetError) { try connection.send(bytes) }

    /// What has arrived (0 at the end); a quiet peer is `.timedOut` after the
    /// client's timeout, which a caller waiting for a person may just retry.
    public func receive(_ buffer: UnsafeMutableRawBufferPointer) throws(NetError) -> Int {
        try connection.receive(buffer)
    }

    /// Ends both directions now (a blocked `receive` returns 0).
    public func shutdown() { _ = Glibc.shutdown(connection.fd, Int32(SHUT_RDWR)) }
}

final class Connection {
    let fd: Int32
    private var tls: TLSSession?
    let timeout: Double
    /// (set anew when the connection serves another request)
    var deadline: Deadline
    /// The timeouts set on the socket now (each written by its own side
    /// only: a switched protocol may send and receive on two threads).
    private var armedReceive = 0.0
    private var armedSend = 0.0

    init(url: HTTPURL, trust: TLSTrust, timeout: Double, deadline: Deadline) throws(NetError) {
        self.timeout = timeout
        self.deadline = deadline
        fd = try connectTCP(url.host, port: url.port, timeout: timeout, deadline: deadline)
        // a request goes out whole at once: no waiting for the ACK of its head
        // (Nagle) while the server delays that ACK for more (40 ms a request)
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        guard url.tls else { return }
        // (a throw from here on leaves a whole object: deinit closes the socket)
        let left = deadline.remaining
        guard left > 0 else { throw .deadline }
        tls = try TLSSession(fd: fd, host: url.host, trust: trust, timeout: min(timeout, left))
    }

    deinit {
        tls = nil
        Glibc.close(fd)
    }

    /// Sets the socket's timeout for the next wait: the client's, or what is
    /// left before the deadline when that is less.
    private func arm(sending: Bool) throws(NetError) {
        let left = deadline.remaining
        guard left > 0 else { throw .deadline }
        let t = min(timeout, left)
        if sending {
            if armedSend != t { setSocketTimeout(fd, t, SO_SNDTIMEO); armedSend = t }
        } else {
            if armedReceive != t { setSocketTimeout(fd, t, SO_RCVTIMEO); armedReceive = t }
        }
    }

    /// Why a wait ended empty: the deadline, or the timeout.
    private func timedOut() -> NetError { deadline.hasPassed ? .deadline : .timedOut(timeout) }

    func send(_ bytes: [UInt8]) throws(NetError) {
        try bytes.withUnsafeBytes { p in Result { () throws(NetError) in try send(p) } }.get()
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws(NetError) {
        var off = 0
        while off < bytes.count {
            try arm(sending: true)
            let rest = UnsafeRawBufferPointer(rebasing: bytes[off...])
            if let tls {
                let n = tls.send(rest)
                if n == -2 { throw timedOut() }
                guard n > 0 else { throw .connectionLost(sending: true, errno: 0) }
                off += n
            } else {
                let n = Glibc.send(fd, rest.baseAddress, rest.count, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    let e = currentErrno()
                    if e == EINTR { continue }
                    if e == EAGAIN || e == EWOULDBLOCK { throw timedOut() }
                    throw .connectionLost(sending: true, errno: e)
                }
                off += n
            }
        }
    }

    /// Reads what has arrived into `buffer` (waiting for something); 0 at
    /// the end of the stream.
    func receive(_ buffer: UnsafeMutableRawBufferPointer) throws(NetError) -> Int {
        while true {
            try arm(sending: false)
            if let tls {
                let n = tls.receive(buffer)
                if n == -2 { throw timedOut() }
                guard n >= 0 else { throw .connectionLost(sending: false, errno: 0) }
                return n
            }
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            let e = currentErrno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { throw timedOut() }
            throw .connectionLost(sending: false, errno: e)
        }
    }
}
