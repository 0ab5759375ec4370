import ArgumentParser

struct DaemonCommand: Command {
    static let configuration = CommandConfiguration(commandName: "daemon", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'daemon' is not available in this build")
    }
}
