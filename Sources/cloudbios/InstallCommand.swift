import ArgumentParser

struct InstallCommand: Command {
    static let configuration = CommandConfiguration(commandName: "install", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'install' is not available in this build")
    }
}
