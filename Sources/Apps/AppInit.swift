#if canImport(Glibc)
import Glibc
#endif
import Platform

/// The host's side of an app microVM's PID 1, `cloudbios-app-init` (a small
/// static C program, Sources/cloudbios-app-init, built beside `cloudbios`):
/// where its binary is, and the line it writes on the app's log when the app
/// ends. What it does in the guest is described in its main.c.
public enum AppInit {
    public static let exitMarker = "[cloudbios] app exited: "
    public static let binaryName = "cloudbios-app-init"

    /// The binary: beside the running `cloudbios` (a build directory, or
    /// /usr/bin in the PE and on installed systems), else in
    /// /usr/lib/cloudbios.
    public static func binary() throws(AppError) -> String {
        var candidates: [String] = []
        if let exe = Files.readLink("/proc/self/exe"), let slash = exe.lastIndex(of: "/") {
            candidates.append(String(exe[..<slash]) + "/" + binaryName)
        }
        candidates += ["/usr/bin/" + binaryName, "/usr/lib/cloudbios/" + binaryName]
        guard let found = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw .unavailable("\(binaryName) is missing (looked in \(candidates.joined(separator: ", ")))")
        }
        return found
    }
}
