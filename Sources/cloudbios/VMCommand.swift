import ArgumentParser
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios vm …`: a client of the daemon's REST API.
struct VMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm",
        abstract: "Manage VMs through the daemon's REST API.",
        subcommands: [VMList.self, VMCreate.self, VMStart.self, VMStop.self, VMShutdown.self, VMReboot.self, VMReset.self,
                      VMPause.self, VMResume.self, VMDelete.self, VMConsole.self, VMSerial.self, VMTerminal.self, VMBackup.self,
                      VMSnapshot.self, VMClone.self, VMMigrate.self])
}

struct ClientOptions: ParsableArguments {
    @Option(help: "The daemon's URL (default: CLOUDBIOS_URL, else the saved login's, else https://127.0.0.1:8443).") var url: String?
    @Option(help: "API token (or CLOUDBIOS_TOKEN).") var token: String?
    @Option(help: "Panel user to log in as (password from CLOUDBIOS_PASSWORD or --password).") var user: String?
    @Option(help: "Password for --user.") var password: String?
    @Option(help: "Certificate to trust (default: STATE/tls/cert.pem when readable).") var cacert: String?
    @Option(name: .customLong("state-dir"), help: "The daemon's state dir (for its certificate).") var stateDir: String = "/var/lib/cloudbios"
    @Flag(help: "Do not verify the daemon's TLS certificate.") var insecure = false
    @Flag(help: "Print JSON.") var json = false

    /// The URL in effect: the flag, CLOUDBIOS_URL, the saved login, the default.
    var effectiveURL: String {
        url ?? getenv("CLOUDBIOS_URL").map { String(cString: $0) } ?? SavedLogin.load()?.url ?? "https://127.0.0.1:8443"
    }

    func client() throws -> APIClient {
        var ca = cacert
        if ca == nil, !insecure, Files.exists("\(stateDir)/tls/cert.pem") { ca = "\(stateDir)/tls/cert.pem" }
        let target = effectiveURL
        var c = try APIClient(url: target, caFile: ca, insecure: insecure)
        c.token = token ?? getenv("CLOUDBIOS_TOKEN").map { String(cString: $0) }
        if c.token == nil, user == nil, let saved = SavedLogin.load(), saved.url == target { c.token = saved.token }
        if c.token == nil, let user {
            guard let pw = password ?? getenv("CLOUDBIOS_PASSWORD").map({ String(cString: $0) }) else {
                throw CLIError("--user needs --password or CLOUDBIOS_PASSWORD")
            }
            let r = try c.request("POST", "/api/v1/login", body: JSONValue.object(["user": .string(user), "password": .string(pw)]).bytes)
            guard r.status == 200, let t = r.json?["token"]?.stringValue else { throw CLIError("login failed: \(r.errorMessage)") }
            c.token = t
        }
        return c
    }

    /// Runs a request and returns its JSON, turning API errors into one-line CLI errors.
    func call(_ method: String, _ path: String, body: JSONValue? = nil) throws -> APIClient.Response {
        let r = try client().request(method, path, body: body?.bytes)
        guard (200..<300).contains(r.status) else {
            throw CLIError(r.status == 401 ? "not authenticated: run 'cloudbios login', or pass --token, CLOUDBIOS_TOKEN or --user"
                                           : SavedLogin.withoutBodyPosition(r.errorMessage))
        }
        return r
    }
}

/// `cloudbios login`: logs in once and keeps the URL and token (0600) in
/// ~/.config/cloudbios/login, so later commands need neither.
struct LoginCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Log in to a daemon and keep the session for later commands.")
    @OptionGroup var o: ClientOptions

    mutating func execute() async throws {
        guard let user = o.user else { throw CLIError("--user is needed (the password from CLOUDBIOS_PASSWORD, --password, or the terminal)") }
        var opts = o
        if opts.password == nil, getenv("CLOUDBIOS_PASSWORD") == nil {
            guard let pw = PasswdCommand.readHidden("Password for \(user): ") else { throw CLIError("no password read") }
            opts.password = pw
        }
        let c = try opts.client()
        guard let token = c.token else { throw CLIError("login failed") }
        try SavedLogin(url: opts.effectiveURL, token: token).save()
        print("logged in to \(opts.effectiveURL) as \(user) (kept in \(SavedLogin.path))")
    }
}

struct SavedLogin {
    var url: String
    var token: String

    static var path: String {
        let home = getenv("HOME").map { String(cString: $0) } ?? "/root"
        return home + "/.config/cloudbios/login"
    }

    static func load() -> SavedLogin? {
        guard let text = try? Files.readString(path) else { return nil }
        let lines = text.split(separator: "\n").map(String.init)
        guard lines.count >= 2, lines[1].utf8.count == 64 else { return nil }
        return SavedLogin(url: lines[0], token: lines[1])
    }

    func save() throws {
        try Files.makeDirectories(Files.parent(of: Self.path), mode: 0o700)
        try Files.writeAtomically(Self.path, url + "\n" + token + "\n", mode: 0o600)
    }

    /// An API error about a body the CLI built ("body:1:11: memory must…")
    /// without the position the user never saw.
    static func withoutBodyPosition(_ m: String) -> String {
        guard m.hasPrefix("body:") else { return m }
        let parts = m.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, Int(parts[1]) != nil, Int(parts[2]) != nil else { return m }
        return parts[3].drop { $0 == " " }.description
    }
}

func vmPath(_ name: String) throws -> String {
    if let p = Names.checkVM(name) { throw CLIError(p) }
    return "/api/v1/vms/\(name)"
}

/// Fixed-width text table.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var w = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < w.count { w[i] = max(w[i], c.count) } }
    func line(_ r: [String]) -> String {
        r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: w[i] - c.count) }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

func printVM(_ v: JSONValue, json: Bool) {
    if json { print(v.serialized(pretty: true)); return }
    let name = v["name"]?.stringValue ?? "?"
    let state = v["state"]?.stringValue ?? "?"
    print("\(name): \(state)" + (v["message"]?.stringValue.map { " (\($0))" } ?? ""))
}

struct VMList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List VMs.")
    @OptionGroup var o: ClientOptions
    func run() throws {
        let r = try o.call("GET", "/api/v1/vms")
        let vms = r.json?.arrayValue ?? r.json?["vms"]?.arrayValue ?? []
        if o.json { print(JSONValue.array(vms).serialized(pretty: true)); return }
        let rows = vms.map { v -> [String] in
            let uptime = v["uptime_seconds"]?.intValue.map { "\($0 / 3600)h\(($0 / 60) % 60)m\($0 % 60)s" } ?? "-"
            let state = (v["state"]?.stringValue ?? "?") + (v["template"]?.boolValue == true ? "/template" : "")
            return [v["name"]?.stringValue ?? "?", state, "\(v["memory"]?.intValue ?? 0)M",
                    "\(v["cpus"]?.intValue ?? 0)", v["accel_in_use"]?.stringValue ?? "-",
                    v["cpu_percent"]?.doubleValue.map { "\($0)%" } ?? "-", v["pid"]?.intValue.map(String.init) ?? "-",
                    uptime, v["autostart"]?.boolValue == true ? "yes" : "no"] + (v["node"]?.stringValue.map { [$0] } ?? [])
        }
        // in a fleet every VM names its node
        let fleet = vms.contains { $0["node"] != nil }
        print(table(["NAME", "STATE", "MEMORY", "CPUS", "ACCEL", "CPU", "PID", "UPTIME", "AUTOSTART"] + (fleet ? ["NODE"] : []),
                    rows.map { fleet && $0.count == 9 ? $0 + ["-"] : $0 }))
    }
}

struct VMCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a VM from options or a JSON file.")
    @OptionGroup var o: ClientOptions
    @Argument(help: "VM name.") var name: String
    @Option(help: "A JSON file with the VM (the body of POST /api/v1/vms).") var file: String?
    @Option(help: "Memory (MiB, or 512M, 2G).") var memory: String?
    @Option(help: "vCPUs.") var cpus: Int?
    @Option(help: "Kernel image (store name).") var kernel: String?
    @Option(help: "Initrd image (store name).") var initrd: String?
    @Option(help: "Kernel command line.") var append: String?
    @Option(help: "ISO image (store name).") var cdrom: String?
    @Option(help: "A disk: SIZE (new qcow2) or image:NAME (overlay of a store image). Repeatable.") var disk: [String] = []
    @Option(help: "bios or uefi.") var firmware: String?
    @Option(help: "nat, bridge or none.") var network: String?
    @Option(help: "auto, kvm or tcg.") var accel: String?
    @Flag(help: "Start with the daemon.") var autostart = false
    @Flag(help: "Start it now.") var start = false
    @Option(help: "In a fleet: the node to create it on (default: the one with the most free memory).") var node: String?

    func run() throws {
        var body: JSONValue
        if let file {
            body = try JSONValue.parse(Files.read(file))
        } else {
            var b: [String: JSONValue] = ["name": .string(name)]
            if let memory { b["memory"] = Int(memory).map { .int($0) } ?? .string(memory) }
            if let cpus { b["cpus"] = .int(cpus) }
            for (k, v) in [("kernel", kernel), ("initrd", initrd), ("append", append), ("cdrom", cdrom),
                           ("firmware", firmware), ("network", network), ("accel", accel)] {
                if let v { b[k] = .string(v) }
            }
            if !disk.isEmpty {
                b["disks"] = .array(disk.map { d in
                    d.hasPrefix("image:") ? .object(["image": .string(String(d.dropFirst(6)))]) : .object(["size": .string(d)])
                })
            }
            if autostart { b["autostart"] = .bool(true) }
            body = .object(b)
        }
        if let node, case .object(var b) = body {
            b["node"] = .string(node)
            body = .object(b)
        }
        var v = try o.call("POST", "/api/v1/vms", body: body).json ?? .null
        if start { v = try o.call("POST", try vmPath(name) + "/start").json ?? v }
        printVM(v, json: o.json)
    }
}

protocol VMActionCommand: ParsableCommand {
    static var action: VMAction { get }
    var o: ClientOptions { get }
    var name: String { get }
}

extension VMActionCommand {
    func run() throws {
        let r = try o.call("POST", try vmPath(name) + "/\(Self.action.rawValue)")
        printVM(r.json ?? .null, json: o.json)
    }
}

struct VMStart: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a VM.")
    static let action = VMAction.start
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}
struct VMStop: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Power a VM off (hard).")
    static let action = VMAction.stop
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}
struct VMShutdown: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "shutdown", abstract: "ACPI shutdown (powered off after a timeout).")
    static let action = VMAction.shutdown
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}
struct VMReboot: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "reboot", abstract: "Reboot a VM cleanly (guest agent, else Ctrl+Alt+Del).")
    static let action = VMAction.reboot
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}
struct VMReset: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "reset", abstract: "Reset a VM (hard).")
    static let action = VMAction.reset
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}
struct VMPause: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a VM.")
    static let action = VMAction.pause
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}
struct VMResume: VMActionCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused VM.")
    static let action = VMAction.resume
    @OptionGroup var o: ClientOptions
    @Argument var name: String
}

struct VMDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a stopped VM and its disks.")
    @OptionGroup var o: ClientOptions
    @Argument var name: String
    func run() throws {
        _ = try o.call("DELETE", try vmPath(name))
        if o.json { print(#"{"deleted":"\#(name)"}"#) } else { print("\(name): deleted") }
    }
}

struct VMSerial: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serial", abstract: "Print a VM's serial console log (--follow: and what comes).")
    @OptionGroup var o: ClientOptions
    @Flag(name: [.customShort("f"), .long], help: "Keep printing what the guest writes, until interrupted.") var follow = false
    @Argument var name: String
    func run() throws { try printLog(o, try vmPath(name) + "/serial", follow: follow) }
}

/// Prints a log the API serves at `path` (a VM's serial console, an app's
/// output) and, with `follow`, what is added to it, asking every half second
/// from the offset the server gave (`X-Log-Offset`).
func printLog(_ o: ClientOptions, _ path: String, follow: Bool) throws {
    let client = try o.client()
    var offset = 0
    while true {
        let r = try client.request("GET", path + (offset > 0 ? "?offset=\(offset)" : ""))
        guard (200..<300).contains(r.status) else {
            throw CLIError(r.status == 401 ? "not authenticated: run 'cloudbios login'" : r.errorMessage)
        }
        try Files.writeAll(1, r.body, what: "write stdout")
        guard follow else { return }
        // the log's size to ask from next time (the whole body when not said)
        offset = r.headers["x-log-offset"].flatMap { Int($0) } ?? offset + r.body.count
        usleep(500_000)
    }
}

struct VMConsole: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "console", abstract: "Where to see a VM's display.")
    @OptionGroup var o: ClientOptions
    @Argument var name: String
    func run() throws {
        let v = try o.call("GET", try vmPath(name)).json ?? .null
        guard v["state"]?.stringValue == "running" || v["state"]?.stringValue == "paused" else {
            throw CLIError("\(name) is \(v["state"]?.stringValue ?? "unknown"); start it first")
        }
        let url = o.effectiveURL
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        // the socket only when it is on this machine (the daemon's state dir is not known otherwise)
        let socket = "\(o.stateDir)/run/\(name)/vnc.sock"
        let local = Files.exists(socket) ? socket : nil
        if o.json {
            var out: [String: JSONValue] = ["url": .string("\(base)/console?vm=\(name)")]
            if let local { out["vnc_socket"] = .string(local) }
            print(JSONValue.object(out).serialized(pretty: true))
        } else {
            print("browser:  \(base)/console?vm=\(name)")
            if let local { print("local:    cloudbios viewer --vm \(name)   (VNC socket \(local))") }
        }
    }
}
