import ArgumentParser

struct PasswdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "passwd", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'passwd' is not available in this build")
    }
}
