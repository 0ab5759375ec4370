import ArgumentParser
import Apps

/// PID 1 of an app's microVM: the initramfs holds this binary as
/// `/app-init`, and the kernel starts it with `rdinit=/app-init`.
struct AppInitCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "app-init",
        abstract: "PID 1 inside an app's microVM (not for use on the host).",
        shouldDisplay: false)

    mutating func execute() async throws {
        AppInit.run()
    }
}
