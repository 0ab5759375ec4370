#if canImport(Glibc)
import Glibc
#endif

/// Line logger: one line per event to stderr (and, in the PE, the serial
/// console and the screen, which PID 1 wires to stderr). Thread-safe: each
/// line is one write(2).
public enum Log {
    public enum Level: String, Sendable { case debug, info, warning, error }

    nonisolated(unsafe) public static var component = "cloudbios"
    nonisolated(unsafe) public static var fd: Int32 = 2
    nonisolated(unsafe) public static var verbose = false

    public static func write(_ level: Level, _ message: String) {
        if level == .debug && !verbose { return }
        let tag = level == .info ? "" : "\(level.rawValue): "
        let line = "\(component): \(tag)\(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { p in
            Glibc.write(fd, p.baseAddress, p.count - 1)
        }
    }

    public static func info(_ m: String) { write(.info, m) }
    public static func warning(_ m: String) { write(.warning, m) }
    public static func error(_ m: String) { write(.error, m) }
    public static func debug(_ m: String) { write(.debug, m) }
}

/// Writes raw bytes to stderr.
@discardableResult
public func writeStderr(_ p: UnsafePointer<CChar>, _ n: Int) -> Int { Glibc.write(2, p, n) }
