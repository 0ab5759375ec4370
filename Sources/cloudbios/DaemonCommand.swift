import ArgumentParser

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "daemon", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'daemon' is not available in this build")
    }
}
