#if canImport(Glibc)
import Glibc
#endif
import CTLS

/// Which server certificates an https connection accepts.
public enum TLSTrust: Sendable, Equatable {
    /// One that chains to the system's trust store (the PE carries
    /// /etc/ssl/certs/ca-certificates.crt) and names the host.
    case system
    /// One that chains to a CA in this PEM file and names the host.
    case authorities(String)
    /// This certificate or one its CA (PEM) issued, whatever name it has:
    /// the CLI trusting the daemon's own self-signed certificate.
    case pinned(String)
    /// Any (the CLI's --insecure).
    case none

    /// `.authorities($SSL_CERT_FILE)` when that is set, else `.system`: the
    /// trust the daemon's downloads, webhooks and PID 1's config fetch use.
    public static var environment: TLSTrust {
        guard let f = getenv("SSL_CERT_FILE"), f.pointee != 0 else { return .system }
        return .authorities(String(cString: f))
    }
}

/// A GnuTLS client session on a connected socket (the socket stays the
/// caller's). Freed when the session goes.
final class TLSSession {
    private let session: OpaquePointer

    /// Shakes hands within `timeout` s; the peer is checked as `trust` says.
    init(fd: Int32, host: String, trust: TLSTrust, timeout: Double) throws(NetError) {
        let (file, check): (String?, Int32) = switch trust {
        case .system: (nil, Int32(CB_TLS_CHECK_NAME))
        case .authorities(let f): (f, Int32(CB_TLS_CHECK_NAME))
        case .pinned(let f): (f, Int32(CB_TLS_CHECK_ISSUER))
        case .none: (nil, Int32(CB_TLS_CHECK_NONE))
        }
        var err = [CChar](repeating: 0, count: 512)
        let ms = Int32(min(max(timeout, 0.001), 86400) * 1000)
        guard let s = cb_tls_client_open(fd, host, file, check, ms, &err, err.count) else {
            let why = String(nulTerminated: err)
            throw .tls(why.isEmpty ? "TLS handshake failed" : why)
        }
        session = s
    }

    deinit { cb_tls_client_close(session) }

    /// Bytes sent; -1 on failure, -2 when the socket's send timeout passed.
    func send(_ p: UnsafeRawBufferPointer) -> Int { cb_tls_client_send(session, p.baseAddress, p.count) }

    /// Bytes received, 0 at the end; -1 on failure, -2 when the socket's
    /// receive timeout passed.
    func receive(_ p: UnsafeMutableRawBufferPointer) -> Int { cb_tls_client_recv(session, p.baseAddress, p.count) }
}
