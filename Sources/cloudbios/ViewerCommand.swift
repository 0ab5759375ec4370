import ArgumentParser

struct ViewerCommand: Command {
    static let configuration = CommandConfiguration(commandName: "viewer", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'viewer' is not available in this build")
    }
}
