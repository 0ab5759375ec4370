#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBase

/// An errno value; it reads as the C library's message for it.
public struct Errno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's errno.
    public static var current: Errno { Errno(cb_errno()) }

    public var description: String { String(cString: strerror(rawValue)) }

    public static let interrupted = Errno(EINTR)
    public static let noSuchFile = Errno(ENOENT)
    public static let exists = Errno(EEXIST)
    public static let permission = Errno(EPERM)
}

/// A failed system call: what was being done, and the errno it failed with.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var code: Errno
    /// `code` as the C library has it.
    public var errno: Int32 { code.rawValue }

    public init(_ operation: String, code: Errno) {
        self.operation = operation
        self.code = code
    }

    public init(_ operation: String, errno: Int32) {
        self.init(operation, code: Errno(errno))
    }

    /// What was being done, and the calling thread's errno now.
    public static func current(_ operation: String) -> SystemError {
        SystemError(operation, code: .current)
    }

    public var description: String {
        "\(operation): \(code)"
    }
}

/// The calling thread's errno.
@inline(__always)
public func currentErrno() -> Int32 { cb_errno() }

/// Runs a libc call that returns -1 on failure, retrying on EINTR, and throws
/// a `SystemError` carrying errno otherwise.
@discardableResult
public func syscall<T: FixedWidthInteger>(_ operation: @autoclosure () -> String,
                                          _ body: () -> T) throws -> T {
    while true {
        let r = body()
        if r == -1 {
            let e = Errno.current
            if e == .interrupted { continue }
            throw SystemError(operation(), code: e)
        }
        return r
    }
}

extension String {
    /// The text a C function wrote into `buffer`, up to its NUL (an error
    /// message, a device path).
    public init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
