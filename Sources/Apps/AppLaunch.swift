import Config

/// What an app's microVM runs, as its host decided it from the image config
/// and the app's own settings: handed to `cloudbios app-init` in the guest
/// on a small read-only disk of its own (JSON, padded with zeros).
public struct AppLaunch: Sendable, Equatable {
    /// The program and its arguments (`argv[0]` looked up in the PATH of `env`).
    public var argv: [String]
    /// `KEY=VALUE`, the image's then the app's (the app's win).
    public var env: [String]
    /// The working directory ("" for /).
    public var cwd: String
    /// The image's `User` (`uid[:gid]` or names from the image's /etc/passwd); "" for root.
    public var user: String
    public var hostname: String

    public init(argv: [String], env: [String], cwd: String, user: String, hostname: String) {
        self.argv = argv; self.env = env; self.cwd = cwd; self.user = user; self.hostname = hostname
    }

    /// Docker's rules: a command given replaces the image's Cmd and keeps
    /// its Entrypoint; app variables override the image's of the same name;
    /// PATH has a default.
    public init(config: ImageConfig, cmd: [String], env: [String: String], hostname: String) throws(AppError) {
        let argv = config.entrypoint + (cmd.isEmpty ? config.cmd : cmd)
        guard let first = argv.first, !first.isEmpty else {
            throw .invalid("the image has no Entrypoint or Cmd and no command was given")
        }
        var merged: [(String, String)] = []
        for e in config.env {
            let parts = e.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            merged.append((String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
        for (k, v) in env.sorted(by: { $0.key < $1.key }) {
            merged.removeAll { $0.0 == k }
            merged.append((k, v))
        }
        if !merged.contains(where: { $0.0 == "PATH" }) {
            merged.insert(("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), at: 0)
        }
        if !merged.contains(where: { $0.0 == "HOSTNAME" }) { merged.append(("HOSTNAME", hostname)) }
        self.init(argv: argv, env: merged.map { "\($0.0)=\($0.1)" }, cwd: config.workingDir, user: config.user, hostname: hostname)
    }

    public var json: JSONValue {
        .object([
            "argv": .array(argv.map { .string($0) }), "env": .array(env.map { .string($0) }),
            "cwd": .string(cwd), "user": .string(user), "hostname": .string(hostname),
        ])
    }

    public static func parse(_ bytes: [UInt8]) throws(AppError) -> AppLaunch {
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw .invalid("app launch: \(error)") }
        func strings(_ k: String) -> [String] { v[k]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        let argv = strings("argv")
        guard !argv.isEmpty else { throw .invalid("app launch: no argv") }
        return AppLaunch(argv: argv, env: strings("env"), cwd: v["cwd"]?.stringValue ?? "",
                         user: v["user"]?.stringValue ?? "", hostname: v["hostname"]?.stringValue ?? "app")
    }
}
