#if canImport(Glibc)
import Glibc
#endif
import CTLS

/// A file written from a stream (a download) and hashed on the way: the
/// writer's `write` only copies into a bounded ring of blocks (32 MiB);
/// a thread hashes each block from memory (nettle: SHA-NI where the CPU
/// has it) while another writes it to the file, with O_DIRECT where the
/// file system takes it (no page-cache copy, no writeback left for the
/// final fsync), else with ordinary writes whose writeback starts as they
/// go. The file descriptor stays the caller's: opened empty for writing,
/// synced and closed by the caller after `finish`.
public final class HashingFileSink {
    private var sink: OpaquePointer?
    private let what: String

    /// Starts writing to `fd` (an empty file; `what` names it in errors).
    public init(fd: Int32, what: String) throws {
        var err: Int32 = 0
        guard let s = cb_filesink_open(fd, &err) else { throw SystemError("write \(what)", errno: err) }
        sink = s
        self.what = what
    }

    /// Appends `bytes` (copied before this returns).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let s = sink else { throw SystemError("write \(what)", errno: EBADF) }
        let rc = cb_filesink_write(s, bytes.baseAddress, bytes.count)
        if rc != 0 { throw SystemError("write \(what)", errno: rc) }
    }

    /// Waits until every byte is written and hashed; the SHA-256 in lowercase hex.
    public func finish() throws -> String {
        guard let s = sink else { throw SystemError("write \(what)", errno: EBADF) }
        sink = nil
        var hex = [CChar](repeating: 0, count: 65)
        let rc = cb_filesink_end(s, 0, &hex)
        if rc != 0 { throw SystemError("write \(what)", errno: rc) }
        return String(nulTerminated: hex)
    }

    /// Stops the threads without a digest (the file is abandoned).
    deinit {
        if let s = sink { _ = cb_filesink_end(s, 1, nil) }
    }
}
