#if canImport(Glibc)
import Glibc
#endif
import Platform

/// Runs blocking work (a child's exit, qemu-img, file copies) on its own OS thread so
/// the small cooperative pool never stalls.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (k: CheckedContinuation<T, any Error>) in
        spawnThread { k.resume(with: Result { try body() }) }
    }
}

/// Runs a helper program to completion; throws with its output on failure.
func runTool(_ argv: [String]) async throws {
    guard let path = Launcher.which(argv[0]) else { throw ManagerError.tool("\(argv[0]) is not installed") }
    let launcher = Launcher(path, Array(argv.dropFirst()))
    let (status, output) = try await blocking { try launcher.run() }
    if status != 0 {
        throw ManagerError.tool("\(argv.joined(separator: " ")) failed (\(status)): \(output.trimmedLines(3))")
    }
}

enum ManagerError: Error, CustomStringConvertible {
    case tool(String)
    var description: String {
        switch self { case .tool(let m): m }
    }
}

extension String {
    /// The last `n` non-empty lines, joined by "; ".
    func trimmedLines(_ n: Int) -> String {
        split(separator: "\n").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }.suffix(n).joined(separator: "; ")
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s.removeLast() }
        return String(s)
    }
}

func now() -> Double { Clock.monotonic() }

func sleep(seconds: Double) async {
    try? await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
}
