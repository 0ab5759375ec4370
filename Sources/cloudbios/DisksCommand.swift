import ArgumentParser

struct DisksCommand: Command {
    static let configuration = CommandConfiguration(commandName: "disks", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'disks' is not available in this build")
    }
}
