#if canImport(Glibc)
import Glibc
#endif
import CTLS

/// GnuTLS, nettle, libcrypt and libmicrohttpd are loaded when first needed,
/// not when cloudbios starts (CTLS/tlslibs.c): PID 1 and the commands
/// that use no TLS, hashing or HTTP start without them, and in the PE they
/// travel in the payload instead of the core the boot loader reads.
public enum TLSLibraries {
    public struct Unavailable: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Loads them, waiting (at most `timeout` s) for the payload to be
    /// mounted first where there is one to wait for. The functions that use
    /// them load them on their own; this is for a process that must not go
    /// on without them (the daemon) and wants the reason when they are missing.
    public static func load(timeout: Double = 60) throws(Unavailable) {
        if let why = Payload.waitMounted(timeout: timeout) {
            throw Unavailable(description: "the TLS and HTTP libraries are in the payload, which is unavailable: \(why)")
        }
        var err = [CChar](repeating: 0, count: 512)
        if cb_tlslibs_load(&err, err.count) == 0 {
            throw Unavailable(description: String(nulTerminated: err))
        }
    }
}
