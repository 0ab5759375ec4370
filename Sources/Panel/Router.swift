import Config

/// Every endpoint the server answers. Pure: `Router.route` maps a method and
/// a decoded path to one of these, or to the error a client gets.
public enum Route: Sendable, Equatable {
    case health, login, logout, session
    /// First run: `GET` tells whether it is needed, `POST` creates the first admin.
    case setupStatus, setup
    case host
    case listVMs, createVM
    /// `POST /api/v1/vms/import` `{"image": OVA, "name": VM}`
    case importVM
    case getVM(String), updateVM(String), deleteVM(String)
    case vmAction(String, VMAction)
    case serial(String), screenshot(String), console(String)
    /// The serial console, interactive, as a WebSocket (binary frames both ways).
    case terminal(String)
    /// `POST /api/v1/vms/{name}/cdrom` `{"image": NAME | null}`
    case cdrom(String)
    /// The appliance itself: reboot, shutdown, the VM on the local display.
    case system(SystemAction)
    case listImages
    case getImage(String), putImage(String), deleteImage(String)
    /// `POST /api/v1/images/{name}/import` `{"url", "sha256"}`
    case importImage(String)
    case disks
    /// `POST /api/v1/disks/{name}/init` `{"wipe": bool}`: the disk becomes a
    /// data disk (one `CB-DATA` partition) the state lives on.
    case initDisk(String)
    case install
    case listTasks, task(String)
    /// `POST /api/v1/vms/{name}/backups` `{"mode": "auto" | "full" | "incremental"}`
    case backupVM(String)
    /// `GET /api/v1/backups[?vm=NAME]`
    case listBackups
    case getBackup(String), deleteBackup(String)
    /// `POST /api/v1/backups/{id}/restore` · `…/verify`
    case restoreBackup(String), verifyBackup(String)
    /// `GET · POST /api/v1/vms/{name}/snapshots`, `POST …/{snap}/revert`, `DELETE …/{snap}`
    case listSnapshots(String), takeSnapshot(String), revertSnapshot(String, String), deleteSnapshot(String, String)
    /// `POST /api/v1/vms/{name}/clone` `{"name": NEW, "linked": true, …}`
    case cloneVM(String)
    case metrics
    /// `GET /api/v1/nodes`: the fleet's nodes.
    case nodes
    /// `DELETE /api/v1/nodes/{name}`: a node that is down leaves the fleet.
    case deleteNode(String)
    /// `POST /api/v1/nodes` `{"name", "address"}`: a node joins (node to node only).
    case joinNode
    /// `POST /api/v1/cluster/join` `{"member", "fleet", "token", "node"?, "address"?}`: this machine joins a fleet.
    case joinFleet
    /// `POST /api/v1/vms/{name}/migrate` `{"node": NAME}`: a live migration, as a task.
    case migrate(String)
    /// `POST /api/v1/vms/{name}/incoming` `{"step", …}`: the destination's part of a migration (node to node only).
    case incoming(String)
    /// Apps: container images run as microVMs.
    case listApps, createApp
    case getApp(String), deleteApp(String)
    case appLogs(String), appExec(String), appStop(String)
    /// A file of the web panel (path relative to the web root).
    case page(String)
    /// A file of noVNC (path relative to the noVNC root).
    case novnc(String)

    /// A WebSocket route (a browser cannot set headers on it: a query token
    /// is accepted, and the cookie only from the panel's own origin).
    public var isWebSocket: Bool {
        switch self {
        case .console, .terminal: return true
        default: return false
        }
    }

    /// Reachable without a session.
    public var isPublic: Bool {
        switch self {
        case .health, .login, .setupStatus, .setup, .page, .novnc: return true
        default: return false
        }
    }

    /// A stable label for metrics (no user-chosen parts).
    public var label: String {
        switch self {
        case .health: return "GET /api/v1/health"
        case .login: return "POST /api/v1/login"
        case .setupStatus: return "GET /api/v1/setup"
        case .setup: return "POST /api/v1/setup"
        case .logout: return "POST /api/v1/logout"
        case .session: return "GET /api/v1/session"
        case .host: return "GET /api/v1/host"
        case .listVMs: return "GET /api/v1/vms"
        case .createVM: return "POST /api/v1/vms"
        case .importVM: return "POST /api/v1/vms/import"
        case .getVM: return "GET /api/v1/vms/{name}"
        case .updateVM: return "PUT /api/v1/vms/{name}"
        case .deleteVM: return "DELETE /api/v1/vms/{name}"
        case .vmAction(_, let a): return "POST /api/v1/vms/{name}/\(a.rawValue)"
        case .serial: return "GET /api/v1/vms/{name}/serial"
        case .screenshot: return "GET /api/v1/vms/{name}/screenshot"
        case .console: return "GET /api/v1/vms/{name}/console"
        case .terminal: return "GET /api/v1/vms/{name}/terminal"
        case .cdrom: return "POST /api/v1/vms/{name}/cdrom"
        case .system(let a): return "POST /api/v1/system/\(a.rawValue)"
        case .listImages: return "GET /api/v1/images"
        case .getImage: return "GET /api/v1/images/{name}"
        case .putImage: return "PUT /api/v1/images/{name}"
        case .deleteImage: return "DELETE /api/v1/images/{name}"
        case .importImage: return "POST /api/v1/images/{name}/import"
        case .disks: return "GET /api/v1/disks"
        case .initDisk: return "POST /api/v1/disks/{name}/init"
        case .install: return "POST /api/v1/install"
        case .listTasks: return "GET /api/v1/tasks"
        case .task: return "GET /api/v1/tasks/{id}"
        case .backupVM: return "POST /api/v1/vms/{name}/backups"
        case .listBackups: return "GET /api/v1/backups"
        case .getBackup: return "GET /api/v1/backups/{id}"
        case .deleteBackup: return "DELETE /api/v1/backups/{id}"
        case .restoreBackup: return "POST /api/v1/backups/{id}/restore"
        case .verifyBackup: return "POST /api/v1/backups/{id}/verify"
        case .listSnapshots: return "GET /api/v1/vms/{name}/snapshots"
        case .takeSnapshot: return "POST /api/v1/vms/{name}/snapshots"
        case .revertSnapshot: return "POST /api/v1/vms/{name}/snapshots/{snap}/revert"
        case .deleteSnapshot: return "DELETE /api/v1/vms/{name}/snapshots/{snap}"
        case .cloneVM: return "POST /api/v1/vms/{name}/clone"
        case .metrics: return "GET /metrics"
        case .nodes: return "GET /api/v1/nodes"
        case .deleteNode: return "DELETE /api/v1/nodes/{name}"
        case .joinNode: return "POST /api/v1/nodes"
        case .joinFleet: return "POST /api/v1/cluster/join"
        case .migrate: return "POST /api/v1/vms/{name}/migrate"
        case .incoming: return "POST /api/v1/vms/{name}/incoming"
        case .listApps: return "GET /api/v1/apps"
        case .createApp: return "POST /api/v1/apps"
        case .getApp: return "GET /api/v1/apps/{name}"
        case .deleteApp: return "DELETE /api/v1/apps/{name}"
        case .appLogs: return "GET /api/v1/apps/{name}/logs"
        case .appExec: return "POST /api/v1/apps/{name}/exec"
        case .appStop: return "POST /api/v1/apps/{name}/stop"
        case .page: return "GET /{page}"
        case .novnc: return "GET /novnc/{file}"
        }
    }
}

/// Why a request has no route.
public struct RouteError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    /// For 405: the methods the path accepts.
    public var allow: [String]
    public init(_ status: Int, _ message: String, allow: [String] = []) {
        self.status = status; self.message = message; self.allow = allow
    }

    public var response: HTTPResponse {
        var h: [(String, String)] = []
        if !allow.isEmpty { h.append(("Allow", allow.joined(separator: ", "))) }
        return .error(status, message, headers: h)
    }
}

public enum Router {
    public static let maxPathBytes = 2048

    /// Maps a method and a percent-decoded path to a route.
    public static func route(method rawMethod: String, path: String) -> Result<Route, RouteError> {
        let method = rawMethod == "HEAD" ? "GET" : rawMethod
        guard path.utf8.count <= maxPathBytes else { return .failure(RouteError(414, "path is too long")) }
        guard path.hasPrefix("/") else { return .failure(RouteError(400, "path must start with '/'")) }
        if path.utf8.contains(0) { return .failure(RouteError(400, "path contains a NUL byte")) }
        if path.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) {
            return .failure(RouteError(400, "path contains control characters"))
        }
        let segs = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)

        // Non-API: metrics, pages, noVNC.
        if segs.first != "api" {
            if path == "/metrics" { return only(method, ["GET"], .metrics) }
            if segs.first == "novnc" {
                let rest = Array(segs.dropFirst())
                guard let rel = safeRelative(rest) else { return .failure(RouteError(400, "invalid file path")) }
                return only(method, ["GET"], .novnc(rel.isEmpty ? "vnc.html" : rel))
            }
            if path == "/" { return only(method, ["GET"], .page("index.html")) }
            if path == "/console" { return only(method, ["GET"], .page("console.html")) }
            if path == "/terminal" { return only(method, ["GET"], .page("terminal.html")) }
            guard let rel = safeRelative(segs), !rel.isEmpty else { return .failure(RouteError(400, "invalid file path")) }
            return only(method, ["GET"], .page(rel))
        }

        guard segs.count >= 3, segs[1] == "v1" else { return .failure(notFound(path)) }
        let rest = Array(segs.dropFirst(2))
        switch rest.count {
        case 1:
            switch rest[0] {
            case "health": return only(method, ["GET"], .health)
            case "login": return only(method, ["POST"], .login)
            case "logout": return only(method, ["POST"], .logout)
            case "setup":
                switch method {
                case "GET": return .success(.setupStatus)
                case "POST": return .success(.setup)
                default: return .failure(notAllowed(method, ["GET", "POST"]))
                }
            case "session": return only(method, ["GET"], .session)
            case "host": return only(method, ["GET"], .host)
            case "vms":
                switch method {
                case "GET": return .success(.listVMs)
                case "POST": return .success(.createVM)
                default: return .failure(notAllowed(method, ["GET", "POST"]))
                }
            case "images": return only(method, ["GET"], .listImages)
            case "disks": return only(method, ["GET"], .disks)
            case "install": return only(method, ["POST"], .install)
            case "tasks": return only(method, ["GET"], .listTasks)
            case "nodes": return method == "POST" ? .success(.joinNode) : only(method, ["GET", "POST"], .nodes)
            case "backups": return only(method, ["GET"], .listBackups)
            case "apps":
                switch method {
                case "GET": return .success(.listApps)
                case "POST": return .success(.createApp)
                default: return .failure(notAllowed(method, ["GET", "POST"]))
                }
            default: return .failure(notFound(path))
            }
        case 2:
            switch rest[0] {
            case "apps":
                let name = rest[1]
                if let e = Names.checkVM(name) { return .failure(RouteError(400, e)) }
                switch method {
                case "GET": return .success(.getApp(name))
                case "DELETE": return .success(.deleteApp(name))
                default: return .failure(notAllowed(method, ["GET", "DELETE"]))
                }
            case "vms" where rest[1] == "import" && method == "POST":
                return .success(.importVM)
            case "vms":
                let name = rest[1]
                if let e = Names.checkVM(name) { return .failure(RouteError(400, e)) }
                switch method {
                case "GET": return .success(.getVM(name))
                case "PUT": return .success(.updateVM(name))
                case "DELETE": return .success(.deleteVM(name))
                default: return .failure(notAllowed(method, ["GET", "PUT", "DELETE"]))
                }
            case "images":
                let name = rest[1]
                if let e = Names.checkImage(name) { return .failure(RouteError(400, e)) }
                switch method {
                case "GET": return .success(.getImage(name))
                case "PUT": return .success(.putImage(name))
                case "DELETE": return .success(.deleteImage(name))
                default: return .failure(notAllowed(method, ["GET", "PUT", "DELETE"]))
                }
            case "system":
                guard let action = SystemAction(rawValue: rest[1]) else { return .failure(notFound(path)) }
                return only(method, ["POST"], .system(action))
            case "nodes":
                if let e = Names.checkNode(rest[1]) { return .failure(RouteError(400, e)) }
                return only(method, ["DELETE"], .deleteNode(rest[1]))
            case "cluster":
                guard rest[1] == "join" else { return .failure(notFound(path)) }
                return only(method, ["POST"], .joinFleet)
            case "tasks":
                let id = rest[1]
                if let e = checkTaskID(id) { return .failure(RouteError(400, e)) }
                return only(method, ["GET"], .task(id))
            case "backups":
                let id = rest[1]
                if let e = Names.checkBackupID(id) { return .failure(RouteError(400, e)) }
                switch method {
                case "GET": return .success(.getBackup(id))
                case "DELETE": return .success(.deleteBackup(id))
                default: return .failure(notAllowed(method, ["GET", "DELETE"]))
                }
            default: return .failure(notFound(path))
            }
        case 3 where rest[0] == "images" && rest[2] == "import":
            if let e = Names.checkImage(rest[1]) { return .failure(RouteError(400, e)) }
            return only(method, ["POST"], .importImage(rest[1]))
        case 3 where rest[0] == "backups":
            if let e = Names.checkBackupID(rest[1]) { return .failure(RouteError(400, e)) }
            switch rest[2] {
            case "restore": return only(method, ["POST"], .restoreBackup(rest[1]))
            case "verify": return only(method, ["POST"], .verifyBackup(rest[1]))
            default: return .failure(notFound(path))
            }
        case 3 where rest[0] == "tasks" || rest[0] == "images":
            let e = rest[0] == "tasks" ? checkTaskID(rest[1]) : Names.checkImage(rest[1..<3].joined(separator: "/"))
            if let e { return .failure(RouteError(400, e)) }
            return .failure(notFound(path))
        case 3 where rest[0] == "disks":
            if let e = Names.checkBlockDevice(rest[1]) { return .failure(RouteError(400, e)) }
            guard rest[2] == "init" else { return .failure(notFound(path)) }
            return only(method, ["POST"], .initDisk(rest[1]))
        case 3 where rest[0] == "apps":
            let name = rest[1]
            if let e = Names.checkVM(name) { return .failure(RouteError(400, e)) }
            switch rest[2] {
            case "logs": return only(method, ["GET"], .appLogs(name))
            case "exec": return only(method, ["POST"], .appExec(name))
            case "stop": return only(method, ["POST"], .appStop(name))
            default: return .failure(notFound(path))
            }
        case 3 where rest[0] == "vms":
            let name = rest[1]
            if let e = Names.checkVM(name) { return .failure(RouteError(400, e)) }
            switch rest[2] {
            case "serial": return only(method, ["GET"], .serial(name))
            case "screenshot": return only(method, ["GET"], .screenshot(name))
            case "console": return only(method, ["GET"], .console(name))
            case "terminal": return only(method, ["GET"], .terminal(name))
            case "cdrom": return only(method, ["POST"], .cdrom(name))
            case "backups": return only(method, ["POST"], .backupVM(name))
            case "clone": return only(method, ["POST"], .cloneVM(name))
            case "snapshots":
                switch method {
                case "GET": return .success(.listSnapshots(name))
                case "POST": return .success(.takeSnapshot(name))
                default: return .failure(notAllowed(method, ["GET", "POST"]))
                }
            case "migrate": return only(method, ["POST"], .migrate(name))
            case "incoming": return only(method, ["POST"], .incoming(name))
            default:
                guard let action = VMAction(rawValue: rest[2]) else { return .failure(notFound(path)) }
                return only(method, ["POST"], .vmAction(name, action))
            }
        case 4 where rest[0] == "vms" && rest[2] == "snapshots", 5 where rest[0] == "vms" && rest[2] == "snapshots" && rest[4] == "revert":
            if let e = Names.checkVM(rest[1]) { return .failure(RouteError(400, e)) }
            if let e = Names.checkSnapshot(rest[3]) { return .failure(RouteError(400, e)) }
            if rest.count == 4 { return only(method, ["DELETE"], .deleteSnapshot(rest[1], rest[3])) }
            return only(method, ["POST"], .revertSnapshot(rest[1], rest[3]))
        default:
            // A VM name holding '/' (e.g. `../x` decoded) lands here.
            if rest.first == "vms" || rest.first == "apps", rest.count > 3 {
                let name = rest[1]
                if let e = Names.checkVM(name) { return .failure(RouteError(400, e)) }
                // a snapshot name holding '/'
                if rest[2] == "snapshots", let e = Names.checkSnapshot(rest[3]) { return .failure(RouteError(400, e)) }
            }
            if rest.first == "tasks", rest.count > 2, let e = checkTaskID(rest[1]) {
                return .failure(RouteError(400, e))
            }
            if rest.first == "images", rest.count > 2 {
                let name = rest[1...].joined(separator: "/")
                if let e = Names.checkImage(name) { return .failure(RouteError(400, e)) }
            }
            return .failure(notFound(path))
        }
    }

    static func only(_ method: String, _ allowed: [String], _ route: Route) -> Result<Route, RouteError> {
        if allowed.contains(method) { return .success(route) }
        return .failure(notAllowed(method, allowed))
    }

    static func notAllowed(_ method: String, _ allowed: [String]) -> RouteError {
        let allow = allowed.contains("GET") ? allowed + ["HEAD"] : allowed
        return RouteError(405, "method \(Names.clip(method)) is not allowed here", allow: allow)
    }

    static func notFound(_ path: String) -> RouteError {
        RouteError(404, "no such endpoint: \(Names.clip(path))")
    }

    /// Task ids: `[A-Za-z0-9_-]{1,64}`.
    public static func checkTaskID(_ id: String) -> String? {
        let u = Array(id.utf8)
        guard !u.isEmpty, u.count <= 64,
              u.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }) else {
            return "task id '\(Names.clip(id))' is invalid"
        }
        return nil
    }

    /// Joins path segments into a relative file path, refusing `..`, hidden
    /// files, empty segments, backslashes and NUL.
    static func safeRelative(_ segs: [String]) -> String? {
        var out: [String] = []
        for (i, s) in segs.enumerated() {
            if s.isEmpty {
                if i == segs.count - 1 && i > 0 { out.append("index.html"); continue }
                if segs.count == 1 { continue }
                return nil
            }
            if s.hasPrefix(".") || s.contains("\\") || s.utf8.contains(0) || s.utf8.count > 255 { return nil }
            out.append(s)
        }
        return out.joined(separator: "/")
    }
}
