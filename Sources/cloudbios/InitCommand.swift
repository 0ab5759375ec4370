import ArgumentParser

struct InitCommand: Command {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'init' is not available in this build")
    }
}
