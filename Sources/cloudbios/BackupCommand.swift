import ArgumentParser
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios vm backup NAME` and `cloudbios backup list|restore|verify|delete`:
/// backups through the daemon's REST API. Task commands wait for their task
/// and print its progress (`--no-wait`: print the task and return).

/// Follows a task until it ends: its messages on stderr as they change, the
/// final one on stdout; a failed task is an error.
func followTask(_ o: ClientOptions, _ task: JSONValue, wait: Bool) throws {
    guard let id = task["id"]?.stringValue else { throw CLIError("the daemon answered without a task") }
    if !wait {
        print(o.json ? task.serialized() : "task \(id): \(task["message"]?.stringValue ?? "")")
        return
    }
    var last = ""
    while true {
        let t = try o.call("GET", "/api/v1/tasks/\(id)").json ?? .null
        let state = t["state"]?.stringValue ?? ""
        let msg = t["message"]?.stringValue ?? ""
        if state == "succeeded" || state == "failed" {
            if o.json { print(t.serialized()) } else { print(msg) }
            if state == "failed" { throw CLIError("task \(id) failed") }
            return
        }
        if msg != last, !o.json {
            FileHandleWriter.stderr("\(t["progress"]?.intValue ?? 0)% \(msg)\n")
            last = msg
        }
        usleep(500_000)
    }
}

func backupPath(_ id: String) throws -> String {
    if let e = Names.checkBackupID(id) { throw CLIError(e) }
    return "/api/v1/backups/\(id)"
}

struct VMBackup: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup",
        abstract: "Back a VM up (running VMs live): incremental when a valid chain exists, else full.")
    @OptionGroup var o: ClientOptions
    @Flag(help: "A full backup.") var full = false
    @Flag(help: "An incremental backup (full, and says why, when the chain is not valid).") var incremental = false
    @Flag(name: .customLong("no-wait"), help: "Return once the backup started.") var noWait = false
    @Argument var name: String
    func run() throws {
        guard !(full && incremental) else { throw CLIError("--full and --incremental exclude each other") }
        let mode = full ? "full" : incremental ? "incremental" : "auto"
        let r = try o.call("POST", try vmPath(name) + "/backups", body: .object(["mode": .string(mode)]))
        try followTask(o, r.json ?? .null, wait: !noWait)
    }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "List, restore, verify and delete backups through the daemon's REST API.",
        subcommands: [BackupList.self, BackupRestore.self, BackupVerify.self, BackupDelete.self])
}

struct BackupList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List backups, newest first.")
    @OptionGroup var o: ClientOptions
    @Option(help: "Only this VM's.") var vm: String?
    func run() throws {
        if let vm, let e = Names.checkVM(vm) { throw CLIError(e) }
        let r = try o.call("GET", "/api/v1/backups" + (vm.map { "?vm=\($0)" } ?? ""))
        let list = r.json?.arrayValue ?? []
        if o.json { print((r.json ?? .array([])).serialized()); return }
        let rows = list.map { b in
            [b["id"]?.stringValue ?? "", b["vm"]?.stringValue ?? "", b["time"]?.stringValue ?? "", b["kind"]?.stringValue ?? "",
             Sizes.human(b["size"]?.int64Value ?? 0), b["parent"]?.stringValue ?? "-"]
        }
        print(table(["ID", "VM", "TIME", "KIND", "SIZE", "PARENT"], rows))
    }
}

struct BackupRestore: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore",
        abstract: "Restore a backup into a new VM (new MACs); a JSON file's spec keys override the backed-up ones.")
    @OptionGroup var o: ClientOptions
    @Argument(help: "The backup's id.") var id: String
    @Option(help: "The new VM's name.") var name: String
    @Option(name: .customLong("from-json"), help: "A JSON object of VM spec keys to override (forwards, memory, …).") var fromJSON: String?
    @Flag(name: .customLong("no-wait"), help: "Return once the restore started.") var noWait = false
    func run() throws {
        var body: [String: JSONValue] = [:]
        if let f = fromJSON {
            let v: JSONValue
            do { v = try JSONValue.parse(try Files.read(f)) } catch { throw CLIError("\(f): \(error)") }
            guard case .object(let o) = v else { throw CLIError("\(f): must hold a JSON object") }
            body = o
        }
        body["name"] = .string(name)
        let r = try o.call("POST", try backupPath(id) + "/restore", body: .object(body))
        try followTask(o, r.json ?? .null, wait: !noWait)
    }
}

struct BackupVerify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Recompute the checksums of a backup's chain.")
    @OptionGroup var o: ClientOptions
    @Argument var id: String
    @Flag(name: .customLong("no-wait"), help: "Return once the check started.") var noWait = false
    func run() throws {
        let r = try o.call("POST", try backupPath(id) + "/verify")
        try followTask(o, r.json ?? .null, wait: !noWait)
    }
}

struct BackupDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete",
        abstract: "Delete a backup (an incremental others build on is merged into them; a full one they build on is refused).")
    @OptionGroup var o: ClientOptions
    @Argument var id: String
    func run() throws {
        _ = try o.call("DELETE", try backupPath(id))
        if o.json { print(#"{"deleted":"\#(id)"}"#) } else { print("\(id): deleted") }
    }
}
