import ArgumentParser

struct PasswdCommand: Command {
    static let configuration = CommandConfiguration(commandName: "passwd", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'passwd' is not available in this build")
    }
}
