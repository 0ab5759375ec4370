import ArgumentParser
import Config
import Platform

/// `cloudbios cluster …`: the fleet's nodes, through the daemon's REST API.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "The fleet's nodes (cluster: in cloudbios.yaml).",
        subcommands: [ClusterNodes.self, ClusterRemove.self, ClusterJoin.self, ClusterLeave.self])
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

/// `cloudbios cluster join ADDRESS --token …`: writes the `cluster:`
/// section that makes this machine join the fleet ADDRESS belongs to; the
/// daemon joins when it starts (its etcd member added through ADDRESS, then
/// started), so it takes effect at the daemon's next start.
struct ClusterJoin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join", abstract: "Make this machine join a running fleet (at the daemon's next start).")
    @Argument(help: "The address of a node of the fleet.") var member: String
    @Option(help: "The fleet's token.") var token: String
    @Option(help: "The fleet's name (cluster.name on its nodes).") var fleet: String
    @Option(help: "This node's name (default: the hostname).") var node: String?
    @Option(help: "This node's address the others reach (default: its first global IPv4 address).") var address: String?
    @Option(help: "The config file to add the cluster: section to.") var config: String = "/etc/cloudbios/cloudbios.yaml"

    func run() throws {
        let text = (try? Files.readString(config)) ?? "version: 1\n"
        if ClusterConfig.hasSection(text) {
            throw CLIError("\(config) has a cluster: section already; this machine is in a fleet")
        }
        let section = ClusterConfig.joiningSection(fleet: fleet, member: member, token: token, node: node, address: address)
        let joined = ClusterConfig.adding(section, to: text)
        // the whole file as the daemon will read it, checked before it is written
        do { _ = try ConfigLoader.load(path: config, text: joined) } catch { throw CLIError(error.description) }
        try Files.writeAtomically(config, joined, mode: 0o600)
        print("\(config): cluster \(fleet) through \(member); the node joins when the daemon starts next")
    }
}

/// `cloudbios cluster leave`: this node leaves its fleet for good, through
/// its daemon (refused while any of its VMs runs: stop or migrate them
/// first); then the `cluster:` section goes from its config file, so that
/// the daemon's next start is on its own.
struct ClusterLeave: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave", abstract: "Make this node leave its fleet (none of its VMs may run).")
    @OptionGroup var o: ClientOptions
    @Option(help: "This node's name (default: cluster.node in the config file, else the hostname).") var node: String?
    @Option(help: "The config file to remove the cluster: section from.") var config: String = "/etc/cloudbios/cloudbios.yaml"

    func run() throws {
        let cfg = (try? Files.readString(config)).flatMap { try? ConfigLoader.load(path: config, text: $0) }
        guard let name = node ?? cfg?.cluster?.node ?? cfg?.hostname ?? DaemonFleet.hostname().nonEmpty else {
            throw CLIError("cannot tell this node's name: pass --node")
        }
        if let e = Names.checkNode(name) { throw CLIError(e) }
        do {
            _ = try o.call("DELETE", "/api/v1/nodes/\(name)")
            print("node \(name) left the fleet")
        } catch let e as CLIError where e.description.contains("is in no fleet") && cfg?.cluster != nil {
            // a leave run again after its daemon left (the answer lost, or the config left as it was): finish it
            print("node \(name) is in no fleet any more")
        }
        // (a daemon started with this file took the section out itself)
        guard cfg?.cluster != nil, let now = try? Files.readString(config), ClusterConfig.hasSection(now) else {
            if cfg?.cluster != nil { print("\(config): cluster: section removed; the daemon starts on its own from now on") }
            return
        }
        try Files.writeAtomically(config, ClusterConfig.removingSection(from: now), mode: 0o600)
        print("\(config): cluster: section removed; the daemon starts on its own from now on")
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
