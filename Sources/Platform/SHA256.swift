#if canImport(Glibc)
import Glibc
#endif
import CTLS

/// SHA-256 of a file as lowercase hex (nettle; streamed, never whole in memory).
public func sha256File(_ path: String) throws -> String {
    var hex = [CChar](repeating: 0, count: 65)
    let rc = cb_sha256_file(path, &hex)
    if rc != 0 { throw SystemError("sha256 \(path)", errno: rc) }
    return String(decoding: hex.prefix(64).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// SHA-256 of a file while it is being written: a thread of its own trails
/// the writer and hashes what has been written straight from the page
/// cache (nettle through the TLS loader: SHA-NI where the CPU has it), so
/// the writer never waits for the hash nor copies for it, and nothing is
/// read twice from the disk.
public final class TrailingSHA256: @unchecked Sendable {
    private var state: OpaquePointer?
    private let running: Bool

    /// Starts hashing `path` (opened here for reading) as it grows.
    public init(path: String) throws {
        var err: Int32 = 0
        guard let s = cb_sha256_trail_open(path, &err) else { throw SystemError("sha256 \(path)", errno: err) }
        state = s
        nonisolated(unsafe) let worker = s
        running = startThread { cb_sha256_trail_run(worker) }
    }

    /// The file now has `size` bytes (called as they are written).
    public func written(_ size: Int64) {
        if let state { cb_sha256_trail_written(state, size) }
    }

    /// Waits until every byte written is hashed; the digest in lowercase hex.
    public func finish() throws -> String {
        guard let s = state else { return "" }
        state = nil
        var hex = [CChar](repeating: 0, count: 65)
        let rc = cb_sha256_trail_end(s, 0, running ? 1 : 0, &hex)
        if rc != 0 { throw SystemError("sha256 of the file being written", errno: rc) }
        return String(nulTerminated: hex)
    }

    /// Stops the thread without a digest (the file is abandoned).
    deinit {
        if let s = state { _ = cb_sha256_trail_end(s, 1, running ? 1 : 0, nil) }
    }
}
