import ArgumentParser

struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vm", abstract: "Not yet available.")

    mutating func run() async throws {
        throw CleanExit.message("'vm' is not available in this build")
    }
}
