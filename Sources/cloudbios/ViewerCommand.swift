import ArgumentParser

struct ViewerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "viewer", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'viewer' is not available in this build")
    }
}
