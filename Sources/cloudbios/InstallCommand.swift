import ArgumentParser

struct InstallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "install", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'install' is not available in this build")
    }
}
