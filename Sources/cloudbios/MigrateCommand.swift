import ArgumentParser
import Config
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios vm migrate NAME NODE`: moves a running VM live to another
/// node of the fleet and waits for the task.
struct VMMigrate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Move a running VM live to another node of the fleet.")
    @OptionGroup var o: ClientOptions
    @Argument(help: "VM name.") var name: String
    @Argument(help: "The node to move it to.") var node: String
    @Flag(help: "Return once the migration has started.") var noWait = false

    func run() throws {
        if let e = Names.checkNode(node) { throw CLIError(e) }
        var t = try o.call("POST", try vmPath(name) + "/migrate", body: .object(["node": .string(node)])).json ?? .null
        guard let id = t["id"]?.stringValue else { throw CLIError("the daemon answered no task") }
        var last = ""
        while !noWait, let st = t["state"]?.stringValue, st == "pending" || st == "running" {
            usleep(300_000)
            t = try o.call("GET", "/api/v1/tasks/\(id)").json ?? t
            let m = t["message"]?.stringValue ?? ""
            if !o.json, m != last { print("\(t["progress"]?.intValue ?? 0)% \(m)"); last = m }
        }
        if o.json { print(t.serialized(pretty: true)); return }
        print("\(name): \(t["state"]?.stringValue ?? "?"): \(t["message"]?.stringValue ?? "")")
        if t["state"]?.stringValue == "failed" { throw ExitCode(1) }
    }
}
