import ArgumentParser
import Config
import Disks

/// `cloudbios disks [list]` and `cloudbios disks init`.
struct DisksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disks",
        abstract: "List block devices (size, model, serial, partitions, filesystems); make a data disk.",
        subcommands: [DisksListCommand.self, DisksInitCommand.self],
        defaultSubcommand: DisksListCommand.self)
}

struct DisksListCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List block devices: size, model, serial, partitions, filesystems.")

    @Flag(name: .long, help: "Print JSON (the same as GET /api/v1/disks).")
    var json = false

    @Argument(help: "Disk image files or device nodes to show instead of every disk.")
    var paths: [String] = []

    mutating func execute() async throws {
        var disks: [DiskInfo]
        if paths.isEmpty {
            disks = Disks.list()
        } else {
            disks = []
            for p in paths {
                do { disks.append(try Disks.inspect(path: p)) } catch { throw CLIError("\(error)") }
            }
        }
        if json {
            print(disks.json.serialized(pretty: true))
        } else {
            print(disks.table(), terminator: "")
        }
    }
}
