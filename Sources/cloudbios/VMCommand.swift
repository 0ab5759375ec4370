import ArgumentParser

struct VMCommand: Command {
    static let configuration = CommandConfiguration(commandName: "vm", abstract: "Not yet available.")

    mutating func execute() async throws {
        throw CleanExit.message("'vm' is not available in this build")
    }
}
