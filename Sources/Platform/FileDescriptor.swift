#if canImport(Glibc)
import Glibc
#endif
import CBase

/// An open file descriptor, and the calls CloudBIOS makes on one: each
/// retries EINTR and throws a `SystemError` saying what was being done. It
/// does not own the descriptor: whoever opens it closes it (`close`).
public struct FileDescriptor: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let standardInput = FileDescriptor(rawValue: 0)
    public static let standardOutput = FileDescriptor(rawValue: 1)
    public static let standardError = FileDescriptor(rawValue: 2)

    /// open(2), close-on-exec; `what` names it in the error (default
    /// "open PATH").
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644, what: String? = nil) throws -> FileDescriptor {
        FileDescriptor(rawValue: try syscall(what ?? "open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    /// A pipe; both ends close-on-exec.
    public static func pipe() throws -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        try syscall("pipe") { cb_pipe_cloexec(&fds) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// Reads what is there into `buffer` (waiting for something when the
    /// descriptor blocks): the bytes read, 0 at the end.
    public func read(into buffer: UnsafeMutableRawBufferPointer, what: @autoclosure () -> String = "read") throws -> Int {
        try syscall(what()) { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads to the end, or until `limit` bytes.
    public func readToEnd(limit: Int = .max, what: @autoclosure () -> String = "read") throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = try buf.withUnsafeMutableBytes { try read(into: $0, what: what()) }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<min(n, limit - out.count)])
        }
        return out
    }

    /// Writes all of `bytes`.
    public func writeAll(_ bytes: UnsafeRawBufferPointer, what: @autoclosure () -> String = "write") throws {
        var off = 0
        while off < bytes.count {
            off += try syscall(what()) { Glibc.write(rawValue, bytes.baseAddress! + off, bytes.count - off) }
        }
    }

    /// Writes all of `bytes`.
    public func writeAll(_ bytes: some Collection<UInt8>, what: @autoclosure () -> String = "write") throws {
        // straight from the collection's storage when it has one (no copy)
        if let done: Void = try bytes.withContiguousStorageIfAvailable({ try writeAll(UnsafeRawBufferPointer($0), what: what()) }) {
            return done
        }
        try Array(bytes).withUnsafeBytes { try writeAll($0, what: what()) }
    }

    /// Copies what is left of `source` here, a MiB at a time; `what` names
    /// the two ends in the errors.
    public func copy(from source: FileDescriptor, what: (read: String, write: String) = ("read", "write")) throws {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try buf.withUnsafeMutableBytes { try source.read(into: $0, what: what.read) }
            if n == 0 { return }
            try buf.withUnsafeBytes { try writeAll(UnsafeRawBufferPointer(rebasing: $0[0..<n]), what: what.write) }
        }
    }

    /// O_NONBLOCK: reads and writes that would wait fail with EAGAIN.
    public func setNonBlocking() {
        _ = fcntl(rawValue, F_SETFL, fcntl(rawValue, F_GETFL) | O_NONBLOCK)
    }

    /// fsync(2).
    public func sync(what: @autoclosure () -> String = "fsync") throws {
        try syscall(what()) { fsync(rawValue) }
    }

    /// close(2); an error (EIO of a late write-back) is not reported here.
    public func close() {
        _ = Glibc.close(rawValue)
    }
}
