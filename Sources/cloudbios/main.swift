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
do {
    var command = try CloudBIOS.parseAsRoot(arguments)
    if var c = command as? Command {
        try await c.execute()
    } else {
        try command.run()   // help, version
    }
} catch {
    CloudBIOS.exit(withError: error)
}
