#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBase

/// A failed system call: what was being done, and the errno it failed with.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno)))"
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
            let e = cb_errno()
            if e == EINTR { continue }
            throw SystemError(operation(), errno: e)
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
