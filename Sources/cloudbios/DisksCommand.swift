import ArgumentParser

struct DisksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disks", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'disks' is not available in this build")
    }
}
