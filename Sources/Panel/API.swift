#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// A request the panel itself refuses once it is routed: a body of the
/// wrong shape, an image that is not there, a socket nobody listens on.
public struct RequestError: DomainError, Sendable, Equatable {
    public var kind: ErrorKind
    public var description: String
    public init(_ kind: ErrorKind, _ message: String) { self.kind = kind; self.description = message }

    public static func badRequest(_ m: String) -> RequestError { .init(.badRequest, m) }
    public static func notFound(_ m: String) -> RequestError { .init(.notFound, m) }
    public static func conflict(_ m: String) -> RequestError { .init(.conflict, m) }
}

/// What to do with a request once its headers are in.
public enum Plan: Sendable {
    /// Answer now.
    case respond(HTTPResponse)
    /// Answer after an async call (no body expected).
    case run(@Sendable () async -> HTTPResponse)
    /// Answer once the request is complete, on the server's own thread:
    /// for answers worked out at once, waiting on nothing (no body expected).
    case now(@Sendable () -> HTTPResponse)
    /// Read a body of at most `limit` bytes, then answer.
    case body(limit: Int, @Sendable ([UInt8]) async -> HTTPResponse)
    /// Stream the body into an upload, then answer.
    case upload(begin: @Sendable () async throws -> any BodySink,
                finish: @Sendable (any BodySink) async -> HTTPResponse)
}

/// The REST API over a `PanelBackend`: parses requests into backend calls and
/// renders their answers. No sockets here; the HTTP server drives it.
public final class PanelAPI: Sendable {
    public static let jsonLimit = 1 << 20
    /// Bodies read before anyone logged in (login, first-run setup): a
    /// stranger gets no more memory than a login form needs.
    public static let preAuthLimit = 8 << 10
    let backend: any PanelBackend
    public let sessions: SessionStore
    /// Failed logins per client address, whatever the user names.
    public let ipLimiter: RateLimiter
    /// Failed logins per client address and user name. Never per user
    /// alone: failures from one address must not lock a user out of all.
    public let addressUserLimiter: RateLimiter
    let users: UserDirectory
    /// The first-run setup, when this panel offers one.
    let firstRun: FirstRun?
    let tls: Bool
    let version: String
    let statics: StaticFiles
    let metrics = HTTPMetrics()
    /// The backend's statuses read at once, when it offers them.
    let immediate: (any ImmediateVMStatus)?
    let securityHeaderList: [(String, String)]

    /// A well-formed hash of a random password: unknown users cost the same
    /// time as known ones.
    let dummyHash: String

    public init(backend: any PanelBackend, users: [PanelUser], tls: Bool, version: String,
                webRoot: String, novncRoot: String = "/usr/share/novnc",
                sessions: SessionStore = SessionStore(), ipLimiter: RateLimiter = RateLimiter(maxFailures: 20),
                addressUserLimiter: RateLimiter = RateLimiter(maxFailures: 5),
                directory: UserDirectory? = nil, firstRun: FirstRun? = nil) {
        self.backend = backend
        self.immediate = backend as? any ImmediateVMStatus
        self.securityHeaderList = PanelAPI.securityHeaders(tls: tls)
        self.users = directory ?? UserDirectory(config: users, store: nil)
        self.firstRun = firstRun
        self.tls = tls
        self.version = version
        self.statics = StaticFiles(webRoot: webRoot, novncRoot: novncRoot)
        self.sessions = sessions
        self.ipLimiter = ipLimiter
        self.addressUserLimiter = addressUserLimiter
        self.dummyHash = (try? PasswordHash.make(Random.token(), prefix: "$6$")) ?? "$6$x$x"
        sessions.retain(users: Set(self.users.all().keys))
    }

    // MARK: - planning

    /// Routes, authenticates and decides how to handle a request.
    public func plan(_ head: RequestHead) -> (label: String, plan: Plan) {
        let route: Route
        switch Router.route(method: head.method, path: head.path) {
        case .failure(let e): return (e.status == 404 ? "unknown" : "invalid", .respond(e.response))
        case .success(let r): route = r
        }
        // Until the first admin exists only the setup (and what the page
        // needs to show it) answers.
        if let f = firstRun, f.pending, !route.isPublic || route == .login {
            return (route.label, .respond(.error(401, FirstRun.requiredMessage)))
        }
        let credential: Credential?
        let relay = backend.fleetRelay
        if let c = head.header(fleetCredentialHeader) {
            // another node of the fleet, speaking for its caller: answered here, never passed on
            guard let relay, let user = relay.verify(c, method: head.method, target: PanelAPI.target(head)) else {
                return (route.label, .respond(.error(401, "invalid node credential")))
            }
            credential = .bearer(Session(token: "", csrf: "", user: user, created: 0, lastUsed: 0))
        } else {
            switch AuthPolicy.authorize(head, route: route, sessions: sessions) {
            case .denied(let status, let message): return (route.label, .respond(.error(status, message)))
            case .allowed(let c): credential = c
            }
        }
        var p = plan(route, head, credential)
        if head.header(fleetCredentialHeader) != nil, let relay, let vm = PanelAPI.vmOf(route), !isResponse(p) {
            p = ownerChecked(relay, vm: vm, p)
        }
        if head.header(fleetCredentialHeader) == nil, let relay, let user = credential?.session.user {
            if let vm = PanelAPI.vmOf(route), !isResponse(p) {
                p = fleetPlan(relay, vm: vm, route: route, head, user: user, local: p)
            } else if case .console(let vm) = route, !isResponse(p) {
                p = fleetWebSocket(relay, vm: vm, head, user: user, local: p)
            } else if case .terminal(let vm) = route, !isResponse(p) {
                p = fleetWebSocket(relay, vm: vm, head, user: user, local: p)
            } else if route == .listVMs {
                p = fleetList(relay, user: user)
            } else if route == .createVM, case .body(_, let f) = p {
                p = fleetCreate(relay, head, user: user, local: f)
            } else if case .task = route, case .run = p {
                p = fleetTask(relay, head, user: user, local: p)
            }
        }
        if credential == nil, case .body(let limit, let f) = p, limit > PanelAPI.preAuthLimit {
            if let n = head.contentLength, n > PanelAPI.preAuthLimit {
                return (route.label, .respond(PanelAPI.tooLarge(PanelAPI.preAuthLimit)))
            }
            p = .body(limit: PanelAPI.preAuthLimit, f)
        }
        return (route.label, p)
    }

    func plan(_ route: Route, _ head: RequestHead, _ credential: Credential?) -> Plan {
        let backend = self.backend
        switch route {
        case .health:
            var h: [String: JSONValue] = ["status": .string("ok"), "version": .string(version)]
            if let f = firstRun { h["setup_required"] = .bool(f.pending) }
            return .respond(.json(.object(h)))
        case .setupStatus:
            guard let f = firstRun else { return .respond(.json(.object(["required": .bool(false)]))) }
            let st = f.storage
            return .respond(.json(.object(["required": .bool(f.pending), "storage": .string(st.storage),
                                           "can_save": .bool(st.canSave), "note": .string(st.note),
                                           "code_hint": .string(FirstRun.codeHint)])))
        case .setup:
            return jsonBody(head) { [self] body in await setup(body, head) }
        case .login:
            return jsonBody(head) { [self] body in await login(body, head) }
        case .logout:
            return .body(limit: 4096) { [self] _ in
                if let c = credential { sessions.remove(c.session.token) }
                var r = HTTPResponse.noContent()
                r.headers.append(("Set-Cookie", cookie(value: "", maxAge: 0)))
                return r
            }
        case .session:
            guard let s = credential?.session else { return .respond(.error(401, "authentication required")) }
            return .respond(.json(.object(["user": .string(s.user), "csrf": .string(s.csrf),
                                           "expires": .string(rfc3339(sessions.expiry(of: s)))])))
        case .host:
            return run { .json(await backend.host().json) }
        case .listVMs:
            if let statuses = immediate { return .now { .json(statuses.listVMsNow()) } }
            return run { .json(await backend.listVMs()) }
        case .createVM:
            return jsonBody(head) { body in
                let spec = try PanelAPI.decodeSpec(body, name: nil)
                return .json(try await backend.createVM(spec), status: 201)
            }
        case .importVM:
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["image", "name"])
                guard let image = o["image"]?.stringValue, let name = o["name"]?.stringValue else {
                    throw RequestError.badRequest("body must be {\"image\": OVA in the image store, \"name\": the new VM}")
                }
                return .json(try await backend.importVM(image: image, name: name).json, status: 202)
            }
        case .getVM(let name):
            if let statuses = immediate { return .now { PanelAPI.guarded { .json(try statuses.vmNow(name)) } } }
            return run { .json(try await backend.vm(name)) }
        case .updateVM(let name):
            return jsonBody(head) { body in
                let spec = try PanelAPI.decodeSpec(body, name: name)
                return .json(try await backend.updateVM(name, spec))
            }
        case .deleteVM(let name):
            return run { try await backend.deleteVM(name); return .noContent() }
        case .vmAction(let name, let action):
            return .body(limit: 4096) { _ in
                await PanelAPI.guarded { .json(try await backend.perform(action, on: name)) }
            }
        case .serial(let name):
            let offsetText = head.query["offset"]
            return run { try await PanelAPI.serial(path: try await backend.serialLogPath(name), offset: offsetText) }
        case .screenshot(let name):
            return run {
                let png = try await backend.screenshot(name)
                return HTTPResponse(status: 200, headers: [("Content-Type", "image/png"), ("Cache-Control", "no-store")], body: .bytes(png))
            }
        case .console(let name):
            return console(name, head)
        case .terminal(let name):
            return webSocketBridge(head, what: "serial console") { try await backend.serialSocketPath(name) }
        case .system(.upgrade):
            // {"url": …} as JSON, or the ISO itself as the raw body
            if let ct = head.header("content-type"), ct.lowercased().hasPrefix("application/json") {
                return jsonBody(head) { body in
                    guard case .string(let url)? = try PanelAPI.bodyObject(body, keys: ["url"])["url"] else {
                        throw RequestError.badRequest("body must be {\"url\": URL} or the ISO as the raw body (application/octet-stream)")
                    }
                    return .json(try await backend.upgrade(url: url).json, status: 202)
                }
            }
            if let ct = head.header("content-type"), ct.lowercased().hasPrefix("multipart/") {
                return .respond(.error(415, "send the ISO as the raw request body (application/octet-stream), not multipart"))
            }
            let expected = head.contentLength
            return .upload(begin: { try await backend.beginUpgradeUpload(expectedSize: expected) },
                           finish: { upload in
                               await PanelAPI.guarded { .json(try await (upload as! any SystemUpload).finish().json, status: 202) }
                           })
        case .system(let action) where action != .display:
            // reboot and shutdown take no body
            return .body(limit: 4096) { _ in
                await PanelAPI.guarded { .json(try await backend.system(action, display: nil), status: 202) }
            }
        case .system:
            return jsonBody(head) { body in
                let vm: String?
                guard let v = try PanelAPI.bodyObject(body, keys: ["vm"])["vm"] else {
                    throw RequestError.badRequest("body must be {\"vm\": NAME} to show a VM on the local display or {\"vm\": null} for none")
                }
                switch v {
                case .null: vm = nil
                case .string(let s):
                    if let e = Names.checkVM(s) { throw RequestError.badRequest(e) }
                    vm = s
                default: throw RequestError.badRequest("'vm' must be a VM name or null")
                }
                return .json(try await backend.system(.display, display: vm), status: 202)
            }
        case .cdrom(let name):
            return jsonBody(head) { body in
                guard let image = try PanelAPI.bodyObject(body, keys: ["image"])["image"] else {
                    throw RequestError.badRequest("body must be {\"image\": NAME} to insert or {\"image\": null} to eject")
                }
                let name_: String?
                switch image {
                case .null: name_ = nil
                case .string(let s): name_ = s
                default: throw RequestError.badRequest("'image' must be an image name or null")
                }
                return .json(try await backend.setCDROM(name, name_))
            }
        case .listImages:
            return run { .json(.array(await backend.listImages().map(\.json))) }
        case .getImage(let name):
            return run {
                guard let i = await backend.listImages().first(where: { $0.name == name }) else {
                    throw RequestError.notFound("no image named '\(name)'")
                }
                return .json(i.json)
            }
        case .putImage(let name):
            let expected = head.contentLength
            if let ct = head.header("content-type"), ct.lowercased().hasPrefix("multipart/") {
                return .respond(.error(415, "send the image as the raw request body (application/octet-stream), not multipart"))
            }
            return .upload(begin: { try await backend.beginImageUpload(name, expectedSize: expected) },
                           finish: { upload in
                               await PanelAPI.guarded { .json(try await (upload as! any ImageUpload).finish().json, status: 201) }
                           })
        case .importImage(let name):
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["url", "sha256"])
                guard let url = o["url"]?.stringValue else { throw RequestError.badRequest("'url' must be a string") }
                var sha: String?
                if let h = o["sha256"], h != .null {
                    guard let s = h.stringValue else { throw RequestError.badRequest("'sha256' must be a string") }
                    sha = s
                }
                return .json(try await backend.importImage(name, url: url, sha256: sha).json, status: 202)
            }
        case .deleteImage(let name):
            return run { try await backend.deleteImage(name); return .noContent() }
        case .disks:
            return run { .json(try await backend.disks()) }
        case .initDisk(let name):
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["wipe"])
                var wipe = false
                if let w = o["wipe"] {
                    guard case .bool(let b) = w else { throw RequestError.badRequest("'wipe' must be true or false") }
                    wipe = b
                }
                return .json(try await backend.initDisk(name, wipe: wipe).json, status: 202)
            }
        case .install:
            return jsonBody(head) { body in
                let v: JSONValue
                do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(PanelAPI.bodyMessage(error)) }
                guard case .object = v else { throw RequestError.badRequest("body must be a JSON object") }
                _ = try InstallConfig.decode(json: body, file: "body")
                return .json(try await backend.startInstall(v).json, status: 202)
            }
        case .listSnapshots(let name):
            return run { .json(try await backend.snapshots(name)) }
        case .takeSnapshot(let name):
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["name", "memory"])
                guard let snap = o["name"]?.stringValue else { throw RequestError.badRequest("body must be {\"name\": SNAPSHOT, \"memory\": true|false}") }
                if let e = Names.checkSnapshot(snap) { throw RequestError.badRequest(e) }
                var memory = false
                if let m = o["memory"] {
                    guard let b = m.boolValue else { throw RequestError.badRequest("'memory' must be true or false") }
                    memory = b
                }
                return .json(try await backend.takeSnapshot(name, snapshot: snap, memory: memory).json, status: 202)
            }
        case .revertSnapshot(let name, let snap):
            return .body(limit: 4096) { _ in
                await PanelAPI.guarded { .json(try await backend.revertSnapshot(name, snapshot: snap).json, status: 202) }
            }
        case .deleteSnapshot(let name, let snap):
            return run { .json(try await backend.deleteSnapshot(name, snapshot: snap)) }
        case .cloneVM(let name):
            return jsonBody(head) { body in
                let v: JSONValue
                do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(PanelAPI.bodyMessage(error)) }
                guard case .object(let o) = v else { throw RequestError.badRequest("body must be a JSON object: {\"name\": NEW, \"linked\": true, …}") }
                return .json(try await backend.cloneVM(name, o).json, status: 202)
            }
        case .listTasks:
            return run { .json(.array(await backend.tasks().map(\.json))) }
        case .nodes:
            return run { .json(try await backend.nodes()) }
        case .deleteNode(let name):
            return run { try await backend.removeNode(name); return .noContent() }
        case .migrate(let name):
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["node"])
                guard let node = o["node"]?.stringValue, Names.checkNode(node) == nil else {
                    throw RequestError.badRequest("body must be {\"node\": NODE}")
                }
                return .json(try await backend.migrate(name, to: node).json, status: 202)
            }
        case .incoming(let name):
            guard head.header(fleetCredentialHeader) != nil else {
                return .respond(.error(403, "only a node of the fleet migrates a VM into this one"))
            }
            return jsonBody(head) { body in
                let v: JSONValue
                do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(PanelAPI.bodyMessage(error)) }
                return .json(try await backend.incoming(name, v))
            }
        case .joinNode:
            guard head.header(fleetCredentialHeader) != nil else {
                return .respond(.error(403, "a node joins the fleet itself, with the fleet's token (cluster: in its cloudbios.yaml)"))
            }
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["name", "address"])
                guard let name = o["name"]?.stringValue, Names.checkNode(name) == nil, let address = o["address"]?.stringValue,
                      PanelAPI.isIPv4(address) else {
                    throw RequestError.badRequest("body must be {\"name\": NODE, \"address\": IPv4}")
                }
                return .json(try await backend.joinNode(name, address: address))
            }
        case .joinFleet:
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["member", "fleet", "token", "node", "address"])
                return .json(try await backend.joinFleet(try FleetJoinRequest(o)))
            }
        case .task(let id):
            return run { .json(try await backend.task(id).json) }
        case .backupVM(let name):
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["mode"])
                var mode = "auto"
                if let m = o["mode"], m != .null {
                    guard let s = m.stringValue, ["auto", "full", "incremental"].contains(s) else {
                        throw RequestError.badRequest("'mode' must be auto, full or incremental")
                    }
                    mode = s
                }
                return .json(try await backend.backupVM(name, mode: mode).json, status: 202)
            }
        case .listBackups:
            let vm = head.query["vm"]
            return run {
                if let vm, let e = Names.checkVM(vm) { throw RequestError.badRequest(e) }
                return .json(try await backend.listBackups(vm: vm))
            }
        case .getBackup(let id):
            return run { .json(try await backend.backup(id)) }
        case .deleteBackup(let id):
            return run { try await backend.deleteBackup(id); return .noContent() }
        case .restoreBackup(let id):
            return jsonBody(head) { body in
                let v: JSONValue
                do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(PanelAPI.bodyMessage(error)) }
                guard case .object(let o) = v else { throw RequestError.badRequest("body must be a JSON object of VM spec keys with 'name'") }
                return .json(try await backend.restoreBackup(id, overrides: o).json, status: 202)
            }
        case .verifyBackup(let id):
            return .body(limit: 4096) { _ in
                await PanelAPI.guarded { .json(try await backend.verifyBackup(id).json, status: 202) }
            }
        case .metrics:
            let http = metrics
            return run {
                var text = await backend.metrics()
                if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
                text += http.render()
                return .text(text, contentType: "text/plain; version=0.0.4; charset=utf-8")
            }
        case .listApps, .createApp, .getApp, .deleteApp, .appLogs, .appExec, .appStop:
            return appsPlan(route, head)
        case .page(let rel):
            return .respond(statics.serve(root: statics.webRoot, rel, head))
        case .novnc(let rel):
            return .respond(statics.serve(root: statics.novncRoot, rel, head))
        }
    }

    func run(_ body: @escaping @Sendable () async throws -> HTTPResponse) -> Plan {
        .run { await PanelAPI.guarded(body) }
    }

    /// A JSON body: content type checked before reading, size limited.
    func jsonBody(_ head: RequestHead, _ body: @escaping @Sendable ([UInt8]) async throws -> HTTPResponse) -> Plan {
        let ct = (head.header("content-type") ?? "").lowercased()
        let mime = ct.split(separator: ";").first.map { $0.trimmingSpaces } ?? ""
        guard mime == "application/json" || (mime.hasPrefix("application/") && mime.hasSuffix("+json")) else {
            return .respond(.error(415, ct.isEmpty ? "Content-Type must be application/json"
                                                    : "Content-Type must be application/json, not '\(Names.clip(ct))'"))
        }
        if let n = head.contentLength, n > PanelAPI.jsonLimit {
            return .respond(PanelAPI.tooLarge(PanelAPI.jsonLimit))
        }
        return .body(limit: PanelAPI.jsonLimit) { bytes in await PanelAPI.guarded { try await body(bytes) } }
    }

    /// A request body that must be a JSON object with only these keys: the
    /// object, else a 400 naming what is wrong.
    static func bodyObject(_ body: [UInt8], keys: [String]) throws(RequestError) -> [String: JSONValue] {
        let v: JSONValue
        do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw .badRequest(bodyMessage(error)) }
        guard case .object(let o) = v else { throw .badRequest("body must be a JSON object with \(keys.joined(separator: ", "))") }
        for k in o.keys.sorted() where !keys.contains(k) {
            throw .badRequest("unknown key '\(Names.clip(k))' (expected \(keys.joined(separator: ", ")))")
        }
        return o
    }

    static func tooLarge(_ limit: Int) -> HTTPResponse {
        .error(413, "request body is larger than \(limit) bytes")
    }

    /// Maps thrown errors to answers: the system's errors by their kind
    /// (`ErrorKind.status`), decoder errors as 400 (syntax) or 422
    /// (content), anything else as 500.
    static func guarded(_ body: @Sendable () async throws -> HTTPResponse) async -> HTTPResponse {
        do {
            return try await body()
        } catch {
            return errorResponse(error)
        }
    }

    static func guarded(_ body: () throws -> HTTPResponse) -> HTTPResponse {
        do {
            return try body()
        } catch {
            return errorResponse(error)
        }
    }

    static func errorResponse(_ error: any Error) -> HTTPResponse {
        switch error {
        case let e as any DomainError:
            return .error(e)
        case let e as ConfigErrors:
            let msgs = e.errors.map { bodyMessage($0) }
            return .json(.object(["error": .string(msgs.joined(separator: "; ")), "errors": .array(msgs.map { .string($0) })]),
                         status: 422)
        case let e as ConfigError:
            return .error(400, bodyMessage(e))
        default:
            Log.error("api: \(error)")
            return .error(500, "internal error: \(error)")
        }
    }

    static func bodyMessage(_ e: ConfigError) -> String { "body:\(e.mark.line):\(e.mark.column): \(e.message)" }

    /// Syntax first (400), then the strict decoder (422). For PUT, the URL
    /// names the VM; a different name in the body is refused.
    static func decodeSpec(_ body: [UInt8], name: String?) throws -> VMSpec {
        let v: JSONValue
        do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(bodyMessage(error)) }
        if let name, let given = v["name"]?.stringValue, given != name {
            throw RequestError.badRequest("name in the body ('\(Names.clip(given))') differs from the URL ('\(name)')")
        }
        return try VMSpec.decode(json: body, file: "body", name: name)
    }

    // MARK: - first run

    func setup(_ body: [UInt8], _ head: RequestHead) async -> HTTPResponse {
        guard let firstRun else { return .error(409, "this panel has no first-run setup; log in") }
        let o: [String: JSONValue]
        do { o = try PanelAPI.bodyObject(body, keys: ["code", "user", "password", "save", "ssh_authorized_keys"]) } catch {
            return .error(error)
        }
        guard let code = o["code"]?.stringValue, let user = o["user"]?.stringValue, let password = o["password"]?.stringValue else {
            return .error(400, "'code', 'user' and 'password' must be strings")
        }
        var save = false
        if let sv = o["save"] {
            guard case .bool(let b) = sv else { return .error(400, "'save' must be true or false") }
            save = b
        }
        var keys: [String] = []
        if let kv = o["ssh_authorized_keys"] {
            guard case .array(let items) = kv else { return .error(400, "'ssh_authorized_keys' must be a list of strings") }
            for item in items {
                guard let k = item.stringValue else { return .error(400, "'ssh_authorized_keys' must be a list of strings") }
                let t = k.trimmingSpaces
                if !t.isEmpty { keys.append(t) }
            }
        }
        guard code.utf8.count <= 64, user.utf8.count <= 64 else { return .error(400, "code or user too long") }
        let outcome: FirstRun.Outcome
        do {
            outcome = try firstRun.setup(.init(code: code, user: user, password: password, save: save, sshAuthorizedKeys: keys),
                                         from: head.clientIP)
        } catch {
            switch error {
            case .done: return .error(409, "the first admin exists already; log in")
            case .throttled(let wait):
                return .error(429, "too many wrong setup codes; try again in \(wait) s", headers: [("Retry-After", String(wait))])
            case .wrongCode: return .error(403, "wrong setup code: " + FirstRun.codeHint)
            case .invalid(let m): return .error(422, m)
            case .failed(let m): return .error(503, m)
            }
        }
        let s = sessions.create(user: user)
        return .json(.object(["token": .string(s.token), "expires": .string(rfc3339(sessions.expiry(of: s))),
                              "csrf": .string(s.csrf), "user": .string(user),
                              "storage": .string(outcome.storage), "message": .string(outcome.message)]),
                     status: 201,
                     headers: [("Set-Cookie", cookie(value: s.token, maxAge: Int(sessions.idleTimeout))), ("Cache-Control", "no-store")])
    }

    // MARK: - login

    func login(_ body: [UInt8], _ head: RequestHead) async -> HTTPResponse {
        let o: [String: JSONValue]
        do { o = try PanelAPI.bodyObject(body, keys: ["user", "password"]) } catch { return .error(error) }
        guard let user = o["user"]?.stringValue, let password = o["password"]?.stringValue else {
            return .error(400, "'user' and 'password' must be strings")
        }
        guard user.utf8.count <= 64, password.utf8.count <= 1024 else { return .error(400, "user or password too long") }
        let ipKey = "ip:" + head.clientIP
        let userKey = "ip:" + head.clientIP + " user:" + user
        if let wait = [ipLimiter.retryAfter(ipKey), addressUserLimiter.retryAfter(userKey)].compactMap({ $0 }).max() {
            Log.warning("panel: login refused for '\(Names.clip(user))' from \(head.clientIP): too many failures")
            return .error(429, "too many failed logins; try again in \(wait) s", headers: [("Retry-After", String(wait))])
        }
        let hash = users.passwordHash(user)
        let ok = PasswordHash.verify(password, hash: hash ?? dummyHash) && hash != nil
        guard ok else {
            ipLimiter.recordFailure(ipKey)
            addressUserLimiter.recordFailure(userKey)
            Log.warning("panel: failed login for '\(Names.clip(user))' from \(head.clientIP)")
            return .error(401, "invalid user or password")
        }
        addressUserLimiter.reset(userKey)
        let s = sessions.create(user: user)
        let expires = sessions.expiry(of: s)
        Log.info("panel: '\(user)' logged in from \(head.clientIP)")
        return .json(.object(["token": .string(s.token), "expires": .string(rfc3339(expires)),
                              "csrf": .string(s.csrf), "user": .string(user)]),
                     headers: [("Set-Cookie", cookie(value: s.token, maxAge: Int(sessions.idleTimeout))), ("Cache-Control", "no-store")])
    }

    func cookie(value: String, maxAge: Int) -> String {
        "\(AuthPolicy.cookieName)=\(value); HttpOnly; SameSite=Strict; Path=/; Max-Age=\(maxAge)" + (tls ? "; Secure" : "")
    }

    // MARK: - serial

    static func serial(path: String, offset: String?) throws -> HTTPResponse {
        var start: Int64 = 0
        if let offset {
            guard let o = Int64(offset), o >= 0 else { throw RequestError.badRequest("offset must be a non-negative integer") }
            start = o
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            // No log yet: empty, offset 0.
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; charset=utf-8"), ("X-Log-Offset", "0"), ("Cache-Control", "no-store")])
        }
        var st = stat()
        fstat(fd, &st)
        let size = Int64(st.st_size)
        // A rotated or truncated log restarts from 0.
        if start > size { start = 0 }
        let headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Log-Offset", String(size)), ("Cache-Control", "no-store")]
        if size == start {
            close(fd)
            return HTTPResponse(status: 200, headers: headers)
        }
        return HTTPResponse(status: 200, headers: headers, body: .file(fd: fd, offset: start, length: size - start))
    }

    // MARK: - console

    func console(_ name: String, _ head: RequestHead) -> Plan {
        let backend = self.backend
        return webSocketBridge(head, what: "console (RFB)") { try await backend.vncSocketPath(name) }
    }

    /// A WebSocket whose binary frames carry the bytes of a VM's Unix socket
    /// both ways (the display's RFB, the serial console).
    func webSocketBridge(_ head: RequestHead, what: String, socket: @escaping @Sendable () async throws -> String) -> Plan {
        guard head.header("upgrade")?.lowercased() == "websocket" else {
            return .respond(.error(426, "this endpoint speaks WebSocket (\(what)); send Upgrade: websocket",
                                   headers: [("Upgrade", "websocket")]))
        }
        guard (head.header("connection") ?? "").lowercased().split(separator: ",").contains(where: { $0.trimmingSpaces == "upgrade" }) else {
            return .respond(.error(400, "Connection: Upgrade is required"))
        }
        guard head.header("sec-websocket-version") == "13" else {
            return .respond(.error(426, "WebSocket version 13 is required", headers: [("Sec-WebSocket-Version", "13")]))
        }
        guard let key = head.header("sec-websocket-key")?.trimmingSpaces, WebSocket.base64DecodedLength(key) == 16 else {
            return .respond(.error(400, "Sec-WebSocket-Key is missing or invalid"))
        }
        let protocols = (head.header("sec-websocket-protocol") ?? "").split(separator: ",").map { $0.trimmingSpaces }
        return run {
            let path = try await socket()
            let fd: Int32
            do { fd = try WebSocketBridge.connectUnix(path) } catch {
                throw RequestError.conflict("the \(what) is not available (is the VM running?)")
            }
            let owned = OwnedFD(fd)
            var headers = [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", WebSocket.acceptKey(key))]
            if protocols.contains("binary") { headers.append(("Sec-WebSocket-Protocol", "binary")) }
            return HTTPResponse(status: 101, headers: headers, body: .upgrade { conn in
                let peer = owned.take()
                guard peer >= 0 else { conn.close(); return }
                WebSocketBridge.start(conn, peer: peer)
            })
        }
    }

    // MARK: - headers on every response

    var securityHeaders: [(String, String)] { securityHeaderList }

    static func securityHeaders(tls: Bool) -> [(String, String)] {
        var h = [
            ("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        ]
        if tls { h.append(("Strict-Transport-Security", "max-age=31536000")) }
        return h
    }

    // MARK: - in-memory driver (tests, tools)

    /// Runs a whole request without sockets.
    public func handle(_ head: RequestHead, body: [UInt8] = []) async -> HTTPResponse {
        var r: HTTPResponse
        switch plan(head).plan {
        case .respond(let x): r = x
        case .run(let f): r = await f()
        case .now(let f): r = f()
        case .body(let limit, let f): r = body.count > limit ? PanelAPI.tooLarge(limit) : await f(body)
        case .upload(let begin, let finish):
            do {
                let u = try await begin()
                try body.withUnsafeBytes { try u.write($0) }
                r = await finish(u)
            } catch {
                r = PanelAPI.errorResponse(error)
            }
        }
        r.headers += securityHeaders
        return r
    }
}
