import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// One multi-call executable. `/init` (or any argv[0] named `init`) runs PID 1;
/// otherwise the first argument names the command.
struct CloudBIOS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cloudbios",
        abstract: "CloudBIOS: a dual-running cloud bootloader and PE appliance.",
        version: CloudBIOSVersion.string,
        subcommands: [
            InitCommand.self, DaemonCommand.self, VMCommand.self, ConfigCommand.self,
            DisksCommand.self, InstallCommand.self, PasswdCommand.self, ViewerCommand.self,
            HostConsoleCommand.self, LoginCommand.self, AppsCommand.self, ClusterCommand.self, BackupCommand.self, UpgradeCommand.self,
            RunCommand.self,
        ]
    )
}

/// A subcommand. `execute` is async; ArgumentParser's own `run` is never
/// called for these (its async/sync overloads are ambiguous on an existential).
protocol Command: ParsableCommand {
    mutating func execute() async throws
}

enum CloudBIOSVersion {
    static let string = "0.1.0"
}

// PID 1 starts before /proc is mounted, where the runtime may not see argv.
var arguments = Array(CommandLine.arguments.dropFirst())
let invokedAs = CommandLine.arguments.first.map { $0.split(separator: "/").last.map(String.init) ?? $0 } ?? (getpid() == 1 ? "init" : "cloudbios")
if invokedAs == "init" {
    arguments = ["init"] + arguments.filter { !$0.hasPrefix("-") || $0.contains("=") == false }
}
/// The commands PID 1 runs at every boot (itself, the daemon, the viewer)
/// are parsed on their own: parsing against the whole command tree reflects
/// over every subcommand's options, which under emulation adds a tenth of a
/// second to each start. Help, version and any parse error go the full way,
/// so their output is the same.
func parse(_ arguments: [String]) throws -> ParsableCommand {
    let fullWay: Set<String> = ["-h", "--help", "help", "--version", "--experimental-dump-help"]
    if let first = arguments.first, !arguments.contains(where: { fullWay.contains($0) || $0.hasPrefix("--generate-completion") }) {
        let rest = Array(arguments.dropFirst())
        let own: ParsableCommand.Type? = ["init": InitCommand.self, "daemon": DaemonCommand.self, "viewer": ViewerCommand.self,
                                         "host-console": HostConsoleCommand.self][first]
        if let own, let command = try? own.parseAsRoot(rest) { return command }
    }
    return try CloudBIOS.parseAsRoot(arguments)
}

do {
    var command = try parse(arguments)
    if var c = command as? Command {
        try await c.execute()
    } else {
        try command.run()   // help, version
    }
} catch {
    CloudBIOS.exit(withError: error)
}
