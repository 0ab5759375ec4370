import ArgumentParser

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'init' is not available in this build")
    }
}
