#if canImport(Glibc)
import Glibc
#endif
import CShims

/// SHA-256 of a file as lowercase hex (nettle; streamed, never whole in memory).
public func sha256File(_ path: String) throws -> String {
    var hex = [CChar](repeating: 0, count: 65)
    let rc = cb_sha256_file(path, &hex)
    if rc != 0 { throw SystemError("sha256 \(path)", errno: rc) }
    return String(decoding: hex.prefix(64).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// SHA-256 of a stream, fed as it passes (nettle through the TLS loader:
/// SHA-NI where the CPU has it).
public final class StreamingSHA256: @unchecked Sendable {
    private var ctx: UnsafeMutableRawPointer?

    /// nil when nettle cannot be loaded.
    public init?() {
        guard let c = cb_sha256_begin() else { return nil }
        ctx = c
    }

    public func add(_ bytes: UnsafeRawBufferPointer) {
        guard let ctx else { return }
        cb_sha256_add(ctx, bytes.baseAddress, bytes.count)
    }

    public func add(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { add($0) }
    }

    /// The hex digest; the state is gone after this.
    public func finish() -> String {
        guard let c = ctx else { return "" }
        ctx = nil
        var hex = [CChar](repeating: 0, count: 65)
        cb_sha256_end(c, &hex)
        return String(nulTerminated: hex)
    }

    deinit { if ctx != nil { _ = finish() } }
}
