import ArgumentParser
import Config

/// `cloudbios cluster …`: the fleet's nodes, through the daemon's REST API.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "The fleet's nodes (cluster: in cloudbios.yaml).",
        subcommands: [ClusterNodes.self, ClusterRemove.self])
}

struct ClusterNodes: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "List the fleet's nodes, up or down.")
    @OptionGroup var o: ClientOptions
    func run() throws {
        let nodes = try o.call("GET", "/api/v1/nodes").json?.arrayValue ?? []
        if o.json { print(JSONValue.array(nodes).serialized(pretty: true)); return }
        let rows = nodes.map { n -> [String] in
            [n["name"]?.stringValue ?? "?", n["address"]?.stringValue ?? "?", n["state"]?.stringValue ?? "?",
             "\(n["cpus"]?.intValue ?? 0)", "\(n["memory"]?.intValue ?? 0)M", "\(n["memory_free"]?.intValue ?? 0)M",
             "\(n["vms"]?.intValue ?? 0)"]
        }
        print(table(["NAME", "ADDRESS", "STATE", "CPUS", "MEMORY", "FREE", "VMS"], rows))
    }
}

struct ClusterRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a node that is down from the fleet.")
    @OptionGroup var o: ClientOptions
    @Argument(help: "The node's name.") var node: String
    func run() throws {
        if let e = Names.checkNode(node) { throw CLIError(e) }
        _ = try o.call("DELETE", "/api/v1/nodes/\(node)")
        print("node \(node) removed from the fleet")
    }
}
