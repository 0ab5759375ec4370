import Config

/// When an app that ended is started again.
public typealias RestartPolicy = AppRestartPolicy

/// A host port forwarded (TCP, from every host address) to a port of the app.
public struct AppPort: Sendable, Equatable {
    public var host: Int
    public var guest: Int
    public init(host: Int, guest: Int) { self.host = host; self.guest = guest }
}

/// An app as `POST /api/v1/apps` (and `apps:` in cloudbios.yaml) gives it.
public struct AppSpec: Sendable, Equatable {
    public var name: String
    public var image: String
    public var cmd: [String] = []
    public var env: [String: String] = [:]
    public var ports: [AppPort] = []
    /// MiB.
    public var memory: Int = 256
    public var cpus: Int = 1
    public var restart: RestartPolicy = .no

    public init(name: String, image: String) { self.name = name; self.image = image }

    public static let memoryRange = AppEntry.memoryRange
    public static let cpuRange = AppEntry.cpuRange

    /// An entry of `apps:` in cloudbios.yaml (checked as the file was read).
    public init(entry e: AppEntry) {
        self.init(name: e.name, image: e.image)
        cmd = e.cmd
        env = e.env
        ports = e.ports.map { AppPort(host: $0.host, guest: $0.guest) }
        memory = e.memory
        cpus = e.cpus
        restart = e.restart
    }

    /// Parses and checks a request body (or a saved definition).
    public static func parse(_ v: JSONValue) throws(AppError) -> AppSpec {
        guard let o = v.objectValue else { throw .badRequest("an app is a JSON object") }
        let known: Set<String> = ["name", "image", "cmd", "env", "ports", "memory", "cpus", "restart"]
        if let k = o.keys.sorted().first(where: { !known.contains($0) }) { throw .badRequest("unknown key '\(Names.clip(k))'") }
        guard let image = o["image"]?.stringValue, !image.isEmpty else { throw .badRequest("'image' is required") }
        let name = o["name"]?.stringValue ?? defaultName(image)
        if let why = Names.checkVM(name) { throw .badRequest("app name '\(Names.clip(name))': \(why)") }
        var s = AppSpec(name: name, image: image)
        if let c = o["cmd"], c != .null {
            guard let a = c.arrayValue, a.allSatisfy({ $0.stringValue != nil }) else { throw .badRequest("'cmd' is a list of strings") }
            s.cmd = a.compactMap(\.stringValue)
        }
        if let e = o["env"], e != .null {
            guard let m = e.objectValue else { throw .badRequest("'env' is an object of strings") }
            for (k, v) in m {
                guard let v = v.stringValue else { throw .badRequest("env '\(Names.clip(k))' is not a string") }
                guard isEnvName(k) else { throw .badRequest("env name '\(Names.clip(k))' is not a variable name") }
                s.env[k] = v
            }
        }
        if let p = o["ports"], p != .null {
            guard let a = p.arrayValue else { throw .badRequest("'ports' is a list of {host, guest}") }
            for item in a {
                guard let h = item["host"]?.intValue, let g = item["guest"]?.intValue else { throw .badRequest("a port is {host, guest}") }
                guard (1...65535).contains(h), (1...65535).contains(g) else { throw .badRequest("port \(h):\(g) is out of 1–65535") }
                if s.ports.contains(where: { $0.host == h }) { throw .badRequest("host port \(h) is given twice") }
                s.ports.append(AppPort(host: h, guest: g))
            }
        }
        if let m = o["memory"], m != .null {
            guard let n = m.intValue, memoryRange.contains(n) else { throw .badRequest("'memory' is MiB in \(memoryRange)") }
            s.memory = n
        }
        if let c = o["cpus"], c != .null {
            guard let n = c.intValue, cpuRange.contains(n) else { throw .badRequest("'cpus' is in \(cpuRange)") }
            s.cpus = n
        }
        if let r = o["restart"], r != .null {
            guard let t = r.stringValue, let p = RestartPolicy(rawValue: t) else { throw .badRequest("'restart' is always, on-failure or no") }
            s.restart = p
        }
        return s
    }

    /// An app's default name: the image's last path part without tag or digest.
    static func defaultName(_ image: String) -> String {
        var base = image.hasPrefix("store:") ? String(image.dropFirst(6)) : String(image.split(separator: "/").last ?? "")
        if let at = base.firstIndex(of: "@") { base = String(base[..<at]) }
        if let colon = base.firstIndex(of: ":") { base = String(base[..<colon]) }
        if let dot = base.firstIndex(of: ".") { base = String(base[..<dot]) }
        return base.isEmpty ? "app" : base
    }

    static func isEnvName(_ k: String) -> Bool { AppEntry.isEnvName(k) }

    public var json: JSONValue {
        .object([
            "name": .string(name), "image": .string(image),
            "cmd": .array(cmd.map { .string($0) }),
            "env": .object(env.mapValues { .string($0) }),
            "ports": .array(ports.map { .object(["host": .int($0.host), "guest": .int($0.guest)]) }),
            "memory": .int(memory), "cpus": .int(cpus), "restart": .string(restart.rawValue),
        ])
    }
}

/// Where an app is.
public enum AppState: String, Sendable, Equatable {
    case running, stopped, exited, failed
}

/// An app as the API shows it.
public struct AppStatus: Sendable, Equatable {
    public var spec: AppSpec
    public var state: AppState
    public var pid: Int32?
    public var digest: String
    public var exitCode: Int?
    public var restarts: Int
    public var message: String?

    public var json: JSONValue {
        var o = spec.json.objectValue ?? [:]
        o["state"] = .string(state.rawValue)
        o["pid"] = pid.map { .int(Int($0)) } ?? .null
        o["digest"] = .string(digest)
        o["exit_code"] = exitCode.map { .int($0) } ?? .null
        o["restarts"] = .int(restarts)
        o["message"] = message.map { .string($0) } ?? .null
        return .object(o)
    }
}
