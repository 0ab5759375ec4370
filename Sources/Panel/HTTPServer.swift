#if canImport(Glibc)
import Glibc
#endif
import CMicroHTTPD
import Config
import Platform

/// libmicrohttpd, owned: one daemon (a pool of poll threads), started on a
/// listening socket and stopped in `deinit`. Requests go to a `PanelAPI`;
/// async answers suspend the connection and resume it when ready, so no
/// HTTP thread ever waits on the backend; answers made at once
/// (`Plan.now`) are made on the HTTP thread, with no hop and no suspension.
final class HTTPServer: @unchecked Sendable {
    private var daemon: OpaquePointer?
    private var stopping = false
    /// Requests answered by `stop` whose answers are still being sent.
    private var draining = Set<ObjectIdentifier>()
    let api: PanelAPI
    private let inFlight = Lock()
    /// Suspended connections waiting for an async answer.
    private var suspended: [ObjectIdentifier: (Context, ConnectionRef)] = [:]

    /// The security headers every answer carries, as C strings made once.
    private let securityHeaders: [(UnsafeMutablePointer<CChar>, UnsafeMutablePointer<CChar>)]

    init(api: PanelAPI) {
        self.api = api
        securityHeaders = api.securityHeaderList.map { (strdup($0.0)!, strdup($0.1)!) }
    }

    func start(listenFD: Int32, ipv6: Bool, threads: Int, tls: TLSMaterial?) throws {
        try TLSLibraries.load()
        let me = Unmanaged.passUnretained(self).toOpaque()
        let d: OpaquePointer?
        if let tls {
            d = cb_mhd_start(listenFD, ipv6 ? 1 : 0, UInt32(threads), HTTPServer.accessHandler, me,
                             HTTPServer.completedHandler, me, HTTPServer.targetHandler, nil, tls.keyPEM, tls.certPEM, 1024, 120)
        } else {
            d = cb_mhd_start(listenFD, ipv6 ? 1 : 0, UInt32(threads), HTTPServer.accessHandler, me,
                             HTTPServer.completedHandler, me, HTTPServer.targetHandler, nil, nil, nil, 1024, 120)
        }
        guard let d else { throw SystemError("start the HTTP server", errno: currentErrno() == 0 ? EINVAL : currentErrno()) }
        daemon = d
    }

    /// Waits (bounded) for suspended requests, answers those still waiting
    /// with 503, then stops the daemon.
    func stop() {
        guard let d = daemon else { return }
        inFlight.withLock { stopping = true }
        for _ in 0..<300 {
            if inFlight.withLock({ suspended.isEmpty }) { break }
            usleep(10_000)
        }
        let left = inFlight.withLock { () -> [(Context, ConnectionRef)] in
            let l = Array(suspended.values)
            suspended.removeAll()
            for (ctx, _) in l {
                ctx.ready = .error(503, "the server is shutting down")
                draining.insert(ObjectIdentifier(ctx))
            }
            return l
        }
        for (_, ref) in left { cb_mhd_resume(ref.c) }
        for _ in 0..<300 {
            if inFlight.withLock({ draining.isEmpty }) { break }
            usleep(10_000)
        }
        endUpgrades()
        inFlight.withLock { daemon = nil }
        cb_mhd_stop(d)
    }

    deinit {
        stop()
        for (k, v) in securityHeaders { free(k); free(v) }
    }

    // MARK: - per-request state

    final class Context: @unchecked Sendable {
        enum Phase { case body, waiting, done }
        var phase = Phase.body
        var plan: Plan = .respond(HTTPResponse(status: 500))
        var label = ""
        var status = 0
        var method = ""
        var path = ""
        var started = Clock.monotonic()
        /// The request target as sent, still percent-encoded.
        var target: String?
        /// The first call of the access handler (headers in) is done.
        var headRead = false
        var body: [UInt8] = []
        var limit = 0
        var tooLarge = false
        var upload: (any BodySink)?
        var uploadError: HTTPResponse?
        var uploaded = 0
        var uploadFinished = false
        /// Set by the async task before it resumes the connection.
        var ready: HTTPResponse?
    }

    struct ConnectionRef: @unchecked Sendable { let c: OpaquePointer }

    static let accessHandler: MHD_AccessHandlerCallback = { cls, conn, url, method, _, data, size, conCls in
        let server = Unmanaged<HTTPServer>.fromOpaque(cls!).takeUnretainedValue()
        return server.access(conn!, url, method, data, size!, conCls!)
    }

    /// Each request's context is made here, from the raw target: MHD hands
    /// the access handler a decoded C string, cut short at a `%00`.
    static let targetHandler: cb_mhd_uri_callback = { _, uri, _ in
        let ctx = Context()
        ctx.target = uri.map { String(cString: $0) }
        return Unmanaged.passRetained(ctx).toOpaque()
    }

    static let completedHandler: MHD_RequestCompletedCallback = { cls, _, conCls, toe in
        guard let cls, let conCls, let raw = conCls.pointee else { return }
        conCls.pointee = nil
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        let ctx = Unmanaged<Context>.fromOpaque(raw).takeRetainedValue()
        server.completed(ctx, ok: cb_mhd_completed_ok(toe) != 0)
    }

    private func completed(_ ctx: Context, ok: Bool) {
        inFlight.withLock { if stopping { _ = draining.remove(ObjectIdentifier(ctx)) } }
        if let u = ctx.upload, !ctx.uploadFinished { u.abort() }
        let status = ok ? ctx.status : (ctx.status == 0 ? 499 : ctx.status)
        let seconds = Clock.monotonic() - ctx.started
        api.metrics.record(route: ctx.label, status: status, seconds: seconds)
        if status >= 400 || (ctx.method != "GET" && ctx.method != "HEAD") {
            if status != 401 || ctx.label != "unknown" {
                Log.info("http: \(ctx.method) \(Names_clip(ctx.path)) \(status) \(Int(seconds * 1000)) ms")
            }
        }
    }

    private func access(_ conn: OpaquePointer, _ url: UnsafePointer<CChar>?, _ method: UnsafePointer<CChar>?,
                        _ data: UnsafePointer<CChar>?, _ size: UnsafeMutablePointer<Int>,
                        _ conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> MHD_Result {
        let ctx: Context
        if let raw = conCls.pointee {
            ctx = Unmanaged<Context>.fromOpaque(raw).takeUnretainedValue()
        } else {
            ctx = Context()
            conCls.pointee = Unmanaged.passRetained(ctx).toOpaque()
        }
        if !ctx.headRead {
            // First call: headers are in. Answers are queued on the final
            // call, once the request is complete, so the connection stays
            // alive; an early answer (413, 401 before an upload) closes it.
            ctx.headRead = true
            let head = requestHead(conn, url, method, target: ctx.target)
            ctx.method = head.method
            ctx.path = head.path
            let (label, plan) = api.plan(head)
            ctx.label = label
            ctx.plan = plan
            let hasBody = (head.contentLength ?? 0) > 0 || head.header("transfer-encoding") != nil
            switch plan {
            case .respond(let r):
                if hasBody { return queue(conn, ctx, r) }
                ctx.ready = r
            case .run, .now:
                ctx.limit = 0
            case .body(let limit, _):
                ctx.limit = limit
                if let n = head.contentLength, n > Int64(limit) {
                    return queue(conn, ctx, PanelAPI.tooLarge(limit))
                }
            case .upload(let begin, _):
                switch runBlocking(begin) {
                case .success(let u): ctx.upload = u
                case .failure(let e): return queue(conn, ctx, PanelAPI.errorResponse(e))
                }
            }
            return cb_mhd_yes()
        }
        if size.pointee > 0 {
            let n = size.pointee
            size.pointee = 0
            guard ctx.phase == .body, ctx.ready == nil else { return cb_mhd_yes() }
            let chunk = UnsafeRawBufferPointer(start: data, count: n)
            if let u = ctx.upload {
                guard ctx.uploadError == nil else { return cb_mhd_yes() }
                do {
                    try u.write(chunk)
                    ctx.uploaded += n
                } catch {
                    u.abort()
                    ctx.uploadFinished = true
                    ctx.uploadError = PanelAPI.errorResponse(error)
                }
            } else if !ctx.tooLarge {
                if ctx.body.count + n > ctx.limit {
                    ctx.tooLarge = true
                    ctx.body = []
                } else {
                    ctx.body.append(contentsOf: chunk)
                }
            }
            return cb_mhd_yes()
        }
        if let r = ctx.ready {
            ctx.ready = nil
            return queue(conn, ctx, r)
        }
        // Final call: the whole body is in.
        guard ctx.phase == .body else { return cb_mhd_yes() }
        ctx.phase = .waiting
        switch ctx.plan {
        case .run(let f):
            return runAsync(conn, ctx, f)
        case .now(let f):
            return queue(conn, ctx, f())
        case .body(_, let f):
            if ctx.tooLarge { return queue(conn, ctx, PanelAPI.tooLarge(ctx.limit)) }
            let body = ctx.body
            ctx.body = []
            return runAsync(conn, ctx) { await f(body) }
        case .upload(_, let finish):
            api.metrics.addUploaded(ctx.uploaded)
            if let e = ctx.uploadError { return queue(conn, ctx, e) }
            guard let u = ctx.upload else { return queue(conn, ctx, .error(500, "upload lost")) }
            return runAsync(conn, ctx) {
                let r = await finish(u)
                ctx.uploadFinished = true
                return r
            }
        case .respond(let r):
            return queue(conn, ctx, r)
        }
        return cb_mhd_yes()
    }

    /// Suspends the connection, runs `f`, and resumes with its answer.
    private func runAsync(_ conn: OpaquePointer, _ ctx: Context, _ f: @escaping @Sendable () async -> HTTPResponse) -> MHD_Result {
        let ref = ConnectionRef(c: conn)
        let id = ObjectIdentifier(ctx)
        let accepted = inFlight.withLock { () -> Bool in
            if stopping { return false }
            suspended[id] = (ctx, ref)
            return true
        }
        guard accepted else { return queue(conn, ctx, .error(503, "the server is shutting down")) }
        cb_mhd_suspend(conn)
        Task {
            let r = await f()
            // Exactly one of this task and `stop` resumes the connection.
            let mine = self.inFlight.withLock { () -> Bool in
                guard self.suspended.removeValue(forKey: id) != nil else { return false }
                ctx.ready = r
                return true
            }
            if mine { cb_mhd_resume(ref.c) }
        }
        return cb_mhd_yes()
    }

    private func queue(_ conn: OpaquePointer, _ ctx: Context, _ r: HTTPResponse) -> MHD_Result {
        ctx.phase = .done
        ctx.status = r.status
        let resp: OpaquePointer?
        switch r.body {
        case .bytes(let b):
            resp = b.withUnsafeBytes {
                cb_mhd_response_copy($0.count, $0.baseAddress)
            }
        case .file(let fd, let offset, let length):
            resp = cb_mhd_response_fd(UInt64(length), fd, UInt64(offset))
            if resp == nil { close(fd) }
        case .upgrade(let handler):
            let box = Unmanaged.passRetained(UpgradeBox(handler, server: self)).toOpaque()
            resp = cb_mhd_response_upgrade(HTTPServer.upgradeHandler, box)
        }
        guard let resp else { return cb_mhd_no() }
        for (k, v) in r.headers { cb_mhd_add_header(resp, k, v) }
        for (k, v) in securityHeaders { cb_mhd_add_header(resp, k, v) }
        let ret = cb_mhd_queue(conn, UInt32(r.status), resp)
        cb_mhd_destroy(resp)
        return ret
    }

    final class UpgradeBox {
        let handler: @Sendable (WebSocketConnection) -> Void
        unowned let server: HTTPServer
        init(_ h: @escaping @Sendable (WebSocketConnection) -> Void, server: HTTPServer) { handler = h; self.server = server }
    }

    struct URHRef: @unchecked Sendable { let p: OpaquePointer }

    /// Upgraded connections still open: `stop` ends them before the daemon
    /// goes away, and exactly one party hands each back to MHD.
    private var upgraded: [Int: (fd: Int32, urh: URHRef)] = [:]
    private var nextUpgradeID = 0

    private func registerUpgrade(fd: Int32, urh: URHRef) -> Int? {
        inFlight.withLock {
            guard !stopping else { return nil }
            nextUpgradeID += 1
            upgraded[nextUpgradeID] = (fd, urh)
            return nextUpgradeID
        }
    }

    private func closeUpgrade(_ id: Int) {
        let entry = inFlight.withLock { upgraded.removeValue(forKey: id) }
        if let entry { _ = cb_mhd_upgrade_close(entry.urh.p) }
    }

    static let upgradeHandler: MHD_UpgradeHandler = { cls, _, _, extra, extraSize, sock, urh in
        let box = Unmanaged<UpgradeBox>.fromOpaque(cls!).takeRetainedValue()
        let leftover = extraSize > 0 && extra != nil
            ? Array(UnsafeRawBufferPointer(start: extra, count: extraSize)) : []
        let server = box.server
        let ref = URHRef(p: urh!)
        guard let id = server.registerUpgrade(fd: sock, urh: ref) else {
            _ = cb_mhd_upgrade_close(ref.p)
            return
        }
        // The bridge does its own polling with blocking writes.
        let flags = fcntl(sock, F_GETFL)
        if flags >= 0 { _ = fcntl(sock, F_SETFL, flags & ~O_NONBLOCK) }
        let conn = WebSocketConnection(fd: sock, leftover: leftover) { [unowned server] in server.closeUpgrade(id) }
        box.handler(conn)
    }

    /// Wakes every bridge (shutdown, not close: the descriptors stay valid
    /// until each bridge hands its connection back) and waits for them.
    private func endUpgrades() {
        let fds = inFlight.withLock { upgraded.values.map(\.fd) }
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
        for _ in 0..<200 {
            if inFlight.withLock({ upgraded.isEmpty }) { return }
            usleep(10_000)
        }
        let left = inFlight.withLock { () -> [URHRef] in
            let l = upgraded.values.map(\.urh)
            upgraded.removeAll()
            return l
        }
        for urh in left { _ = cb_mhd_upgrade_close(urh.p) }
    }

    // MARK: - request head from MHD

    final class Collector { var values: [String: String] = [:]; var lowercase = true }

    /// The path is decoded from the raw target when there is one, so that a
    /// `%00` reaches the router as the NUL it is (and is refused there).
    private func requestHead(_ conn: OpaquePointer, _ url: UnsafePointer<CChar>?, _ method: UnsafePointer<CChar>?,
                             target: String?) -> RequestHead {
        let headers = collect(conn, cb_mhd_header_kind(), lowercase: true)
        let query = collect(conn, cb_mhd_query_kind(), lowercase: false)
        let cookies = collect(conn, cb_mhd_cookie_kind(), lowercase: false)
        var ip = [CChar](repeating: 0, count: 64)
        cb_mhd_client_ip(conn, &ip, 64)
        var path = url.map { String(cString: $0) } ?? "/"
        if let target, target.hasPrefix("/") {
            path = percentDecode(String(target.prefix { $0 != "?" }))
        }
        var head = RequestHead(method: method.map { String(cString: $0) } ?? "GET",
                               path: path,
                               query: query, cookies: cookies, clientIP: String(nulTerminated: ip))
        head.headers = headers
        return head
    }

    private func collect(_ conn: OpaquePointer, _ kind: MHD_ValueKind, lowercase: Bool) -> [String: String] {
        let c = Collector()
        c.lowercase = lowercase
        _ = withExtendedLifetime(c) {
            cb_mhd_values(conn, kind, { cls, _, key, value in
                let c = Unmanaged<Collector>.fromOpaque(cls!).takeUnretainedValue()
                if let key {
                    let k = String(cString: key)
                    let name = c.lowercase ? k.lowercased() : k
                    if c.values[name] == nil { c.values[name] = value.map { String(cString: $0) } ?? "" }
                }
                return cb_mhd_yes()
            }, Unmanaged.passUnretained(c).toOpaque())
        }
        return c.values
    }
}
