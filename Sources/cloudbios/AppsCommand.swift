import ArgumentParser
import Apps
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Apps: container images run as microVMs.
struct AppsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apps",
        abstract: "Apps: container images run as microVMs (list, logs, exec, stop, rm through the daemon; pull into a local cache).",
        subcommands: [AppsList.self, AppsLogs.self, AppsExec.self, AppsStop.self, AppsRemove.self, AppsPull.self])
}

/// Pulls an image into the state dir's cache (layers checked against their
/// digests, shared between images) and builds its read-only root filesystem.
struct AppsPull: Command {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pull an image (REGISTRY/REPO:TAG, @sha256:…, or store:NAME for an OCI or docker archive in the image store) and build its root filesystem.")

    @Argument(help: "The image: [REGISTRY/]REPO[:TAG][@sha256:HEX] (loopback registries over HTTP), or store:NAME.")
    var image: String

    @Option(name: .customLong("state-dir"), help: "Where the cache is (STATE/apps).")
    var stateDir: String = "/var/lib/cloudbios"

    @Option(name: .customLong("insecure-registry"), help: "A registry (HOST[:PORT]) to reach over plain HTTP; repeatable.")
    var insecureRegistries: [String] = []

    @Flag(help: "Print JSON.") var json = false

    mutating func execute() async throws {
        let puller = ImagePuller(cache: ImageCache(stateDir: stateDir), insecure: Set(insecureRegistries))
        let quiet = json
        let pulled: PulledImage
        do {
            pulled = try puller.pull(image) { step in if !quiet { print("pulling \(step)") } }
        } catch {
            throw CLIError("\(error)")
        }
        if json {
            print(JSONValue.object([
                "image": .string(pulled.reference), "digest": .string(pulled.digest),
                "rootfs": .string(pulled.rootfs), "layers_downloaded": .int(pulled.downloaded),
                "config": pulled.config.json,
            ]).serialized(pretty: true))
        } else {
            print("\(pulled.reference): \(pulled.digest)")
            print("root filesystem: \(pulled.rootfs)")
        }
    }
}

/// `cloudbios run`: pulls an image and boots it as an app (through the daemon).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a container image as an app in a microVM of its own (through the daemon).")
    @OptionGroup var o: ClientOptions
    @Option(name: .long, help: "The app's name (default: the image's repository name).") var name: String?
    @Option(name: .customShort("p"), help: "Forward a host TCP port to the app: HOST:GUEST. Repeatable.") var publish: [String] = []
    @Option(name: .customShort("e"), help: "An environment variable: KEY=VALUE. Repeatable.") var env: [String] = []
    @Option(name: .customShort("m"), help: "Memory (MiB, or 512M, 1G).") var memory: String?
    @Option(help: "vCPUs.") var cpus: Int?
    @Option(help: "always, on-failure or no.") var restart: String?
    @Argument(help: "The image: [REGISTRY/]REPO[:TAG][@sha256:HEX], or store:NAME.") var image: String
    @Argument(parsing: .captureForPassthrough, help: "The command (replaces the image's Cmd).") var cmd: [String] = []

    func run() throws {
        var b: [String: JSONValue] = ["image": .string(image)]
        if let name { b["name"] = .string(name) }
        if !cmd.isEmpty { b["cmd"] = .array(cmd.map { .string($0) }) }
        var vars: [String: JSONValue] = [:]
        for e in env {
            guard let eq = e.firstIndex(of: "="), eq != e.startIndex else { throw CLIError("-e takes KEY=VALUE, not '\(e)'") }
            vars[String(e[..<eq])] = .string(String(e[e.index(after: eq)...]))
        }
        if !vars.isEmpty { b["env"] = .object(vars) }
        var ports: [JSONValue] = []
        for p in publish {
            let parts = p.split(separator: ":")
            guard parts.count == 2, let h = Int(parts[0]), let g = Int(parts[1]) else { throw CLIError("-p takes HOST:GUEST, not '\(p)'") }
            ports.append(.object(["host": .int(h), "guest": .int(g)]))
        }
        if !ports.isEmpty { b["ports"] = .array(ports) }
        if let memory {
            guard let mib = Self.mebibytes(memory) else { throw CLIError("-m takes MiB, or a size such as 512M or 1G, not '\(memory)'") }
            b["memory"] = .int(mib)
        }
        if let cpus { b["cpus"] = .int(cpus) }
        if let restart { b["restart"] = .string(restart) }
        let v = try o.call("POST", "/api/v1/apps", body: .object(b)).json ?? .null
        printApp(v, json: o.json)
    }

    static func mebibytes(_ s: String) -> Int? {
        if let n = Int(s) { return n }
        guard let last = s.last, let n = Int(s.dropLast()) else { return nil }
        switch last {
        case "M", "m": return n
        case "G", "g": return n * 1024
        default: return nil
        }
    }
}

func appPath(_ name: String) throws -> String {
    if let p = Names.checkVM(name) { throw CLIError(p) }
    return "/api/v1/apps/\(name)"
}

func printApp(_ v: JSONValue, json: Bool) {
    if json { print(v.serialized(pretty: true)); return }
    let ports = (v["ports"]?.arrayValue ?? []).map { "\($0["host"]?.intValue ?? 0)->\($0["guest"]?.intValue ?? 0)" }.joined(separator: ",")
    print("\(v["name"]?.stringValue ?? "?"): \(v["state"]?.stringValue ?? "?")" + (v["pid"]?.intValue.map { " (pid \($0))" } ?? "")
          + (ports.isEmpty ? "" : " ports \(ports)") + (v["message"]?.stringValue.map { ": \($0)" } ?? ""))
}

struct AppsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List apps.")
    @OptionGroup var o: ClientOptions
    func run() throws {
        let apps = try o.call("GET", "/api/v1/apps").json?.arrayValue ?? []
        if o.json { print(JSONValue.array(apps).serialized(pretty: true)); return }
        let rows = apps.map { v -> [String] in
            [v["name"]?.stringValue ?? "?", v["state"]?.stringValue ?? "?", v["image"]?.stringValue ?? "?",
             (v["ports"]?.arrayValue ?? []).map { "\($0["host"]?.intValue ?? 0)->\($0["guest"]?.intValue ?? 0)" }.joined(separator: ","),
             v["pid"]?.intValue.map(String.init) ?? "-", v["exit_code"]?.intValue.map(String.init) ?? "-",
             "\(v["restarts"]?.intValue ?? 0)"]
        }
        print(table(["NAME", "STATE", "IMAGE", "PORTS", "PID", "EXIT", "RESTARTS"], rows))
    }
}

struct AppsLogs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print an app's output (--follow: and what comes).")
    @OptionGroup var o: ClientOptions
    @Flag(name: [.customShort("f"), .long], help: "Keep printing what the app writes, until interrupted.") var follow = false
    @Argument var name: String
    func run() throws { try printLog(o, try appPath(name) + "/logs", follow: follow) }
}

struct AppsExec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a command in an app; its output is printed and its exit code is this command's.")
    @OptionGroup var o: ClientOptions
    @Argument var name: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.") var cmd: [String] = []
    func run() throws {
        guard !cmd.isEmpty else { throw CLIError("exec needs a command") }
        let v = try o.call("POST", try appPath(name) + "/exec", body: .object(["cmd": .array(cmd.map { .string($0) })])).json ?? .null
        if o.json { print(v.serialized(pretty: true)); return }
        try Files.writeAll(1, Array((v["stdout"]?.stringValue ?? "").utf8), what: "write stdout")
        try Files.writeAll(2, Array((v["stderr"]?.stringValue ?? "").utf8), what: "write stderr")
        let code = v["exit_code"]?.intValue ?? 1
        if code != 0 { throw ExitCode(Int32(truncatingIfNeeded: code)) }
    }
}

struct AppsStop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop an app (SIGTERM, then SIGKILL after 10 s).")
    @OptionGroup var o: ClientOptions
    @Argument var name: String
    func run() throws {
        printApp(try o.call("POST", try appPath(name) + "/stop").json ?? .null, json: o.json)
    }
}

struct AppsRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Stop an app and remove it (its logs too; the image stays cached).")
    @OptionGroup var o: ClientOptions
    @Argument var name: String
    func run() throws {
        _ = try o.call("DELETE", try appPath(name))
        if !o.json { print("\(name): removed") }
    }
}
