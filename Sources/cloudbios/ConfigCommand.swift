import ArgumentParser

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'config' is not available in this build")
    }
}
