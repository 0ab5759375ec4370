import ArgumentParser
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios vm snapshot list|take|revert|delete NAME …` and `cloudbios vm
/// clone NAME NEW`: clients of the snapshot and clone routes. Taking,
/// reverting and cloning are tasks; the command follows one until it ends
/// (`--no-wait` prints it and returns).
struct VMSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "List, take, revert and delete a VM's snapshots.",
        subcommands: [SnapshotList.self, SnapshotTake.self, SnapshotRevert.self, SnapshotDelete.self])
}

func snapshotPath(_ vm: String, _ snap: String? = nil) throws -> String {
    var p = try vmPath(vm) + "/snapshots"
    if let snap {
        if let e = Names.checkSnapshot(snap) { throw CLIError(e) }
        p += "/\(snap)"
    }
    return p
}

/// Follows a task until it ends: its messages on stderr as they change,
/// its result back (an error when it failed).
func followSnapshotTask(_ o: ClientOptions, _ task: JSONValue, wait: Bool) throws -> JSONValue {
    guard wait, let id = task["id"]?.stringValue else { return task }
    let client = try o.client()
    var last = ""
    while true {
        let r = try client.request("GET", "/api/v1/tasks/\(id)")
        guard (200..<300).contains(r.status), let t = r.json else { throw CLIError(r.errorMessage) }
        let msg = t["message"]?.stringValue ?? ""
        let state = t["state"]?.stringValue ?? "?"
        if msg != last, !o.json, state == "running" || state == "pending" {
            FileHandleLite.stderr("\(id): \(msg)\(t["progress"]?.intValue.map { $0 > 0 ? " (\($0)%)" : "" } ?? "")")
            last = msg
        }
        switch state {
        case "succeeded": return t
        case "failed": throw CLIError("\(id) failed: \(msg)")
        default: usleep(300_000)
        }
    }
}

/// A line on stderr.
enum FileHandleLite {
    static func stderr(_ line: String) { try? Files.writeAll(2, Array((line + "\n").utf8), what: "write stderr") }
}

func printSnapshots(_ list: [JSONValue], json: Bool) {
    if json { print(JSONValue.array(list).serialized(pretty: true)); return }
    // a tree: children under their parent, oldest first
    var lines: [[String]] = []
    func walk(_ parent: String?, _ depth: Int) {
        for s in list where s["parent"]?.stringValue == parent {
            let name = s["name"]?.stringValue ?? "?"
            lines.append([String(repeating: "  ", count: depth) + name + (s["current"]?.boolValue == true ? " *" : ""),
                          s["time"]?.stringValue ?? "-", s["consistency"]?.stringValue ?? "-"])
            walk(name, depth + 1)
        }
    }
    walk(nil, 0)
    print(table(["SNAPSHOT (* current)", "TIME", "KIND"], lines))
}

struct SnapshotList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "A VM's snapshots as a tree (* marks the current one).")
    @OptionGroup var o: ClientOptions
    @Argument(help: "VM name.") var name: String
    func run() throws {
        printSnapshots(try o.call("GET", try snapshotPath(name)).json?.arrayValue ?? [], json: o.json)
    }
}

struct SnapshotTake: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "take", abstract: "Take a snapshot: the disks (quiesced through the guest agent when it answers), or with --memory the RAM too.")
    @OptionGroup var o: ClientOptions
    @Flag(help: "Save the running guest's RAM too: a revert resumes it where it was.") var memory = false
    @Flag(name: .customLong("no-wait"), help: "Print the task and return.") var noWait = false
    @Argument(help: "VM name.") var name: String
    @Argument(help: "Snapshot name (a letter, then letters, digits, '.', '_', '-').") var snapshot: String
    func run() throws {
        if let e = Names.checkSnapshot(snapshot) { throw CLIError(e) }
        let task = try o.call("POST", try snapshotPath(name), body: .object(["name": .string(snapshot), "memory": .bool(memory)])).json ?? .null
        let t = try followSnapshotTask(o, task, wait: !noWait)
        if o.json { print(t.serialized(pretty: true)) } else { print(t["message"]?.stringValue ?? "") }
    }
}

struct SnapshotRevert: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revert", abstract: "Go back to a snapshot.")
    @OptionGroup var o: ClientOptions
    @Flag(name: .customLong("no-wait"), help: "Print the task and return.") var noWait = false
    @Argument(help: "VM name.") var name: String
    @Argument(help: "Snapshot name.") var snapshot: String
    func run() throws {
        let task = try o.call("POST", try snapshotPath(name, snapshot) + "/revert").json ?? .null
        let t = try followSnapshotTask(o, task, wait: !noWait)
        if o.json { print(t.serialized(pretty: true)) } else { print(t["message"]?.stringValue ?? "") }
    }
}

struct SnapshotDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a snapshot (its children hang from its parent).")
    @OptionGroup var o: ClientOptions
    @Argument(help: "VM name.") var name: String
    @Argument(help: "Snapshot name.") var snapshot: String
    func run() throws {
        let left = try o.call("DELETE", try snapshotPath(name, snapshot)).json?.arrayValue ?? []
        if o.json { print(JSONValue.array(left).serialized(pretty: true)) } else { print("\(name): snapshot \(snapshot) deleted") }
    }
}

struct VMClone: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Make a new VM from another: a linked clone of a template (default), or a full copy (--full).")
    @OptionGroup var o: ClientOptions
    @Flag(help: "Copy the disks (qemu-img convert) instead of linking them to the template's.") var full = false
    @Option(help: "A JSON file of spec keys to override (memory, cloud_init, forwards, …).") var file: String?
    @Flag(name: .customLong("no-wait"), help: "Print the task and return.") var noWait = false
    @Argument(help: "The source VM (a template for a linked clone).") var name: String
    @Argument(help: "The new VM's name.") var new: String
    func run() throws {
        if let e = Names.checkVM(new) { throw CLIError(e) }
        var body: [String: JSONValue] = [:]
        if let file {
            guard case .object(let o)? = try? JSONValue.parse(Files.read(file)) else { throw CLIError("\(file) is not a JSON object") }
            body = o
        }
        body["name"] = .string(new)
        body["linked"] = .bool(!full)
        let task = try o.call("POST", try vmPath(name) + "/clone", body: .object(body)).json ?? .null
        let t = try followSnapshotTask(o, task, wait: !noWait)
        if o.json { print(t.serialized(pretty: true)) } else { print(t["message"]?.stringValue ?? "") }
    }
}
