#if canImport(Glibc)
import Glibc
#endif
import CTLS
import Config
import Platform

/// The certificate and key the server presents.
public struct TLSMaterial: Sendable {
    public var certPEM: String
    public var keyPEM: String
    /// SHA-256 of the certificate, colon-separated uppercase hex.
    public var fingerprint: String

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Loads (or, for `self-signed`, creates once and keeps) the material.
    /// nil when TLS is off.
    public static func load(_ mode: TLSMode, stateDir: String, hostname: String) throws -> TLSMaterial? {
        switch mode {
        case .off:
            // Nothing stale for the console to show.
            Files.remove(stateDir + "/tls/fingerprint")
            return nil
        case .files(let cert, let key):
            let c = try Files.readString(cert), k = try Files.readString(key)
            try check(c, k, what: "\(cert) and \(key)")
            let m = TLSMaterial(certPEM: c, keyPEM: k, fingerprint: try fingerprint(c))
            try Files.makeDirectories(stateDir + "/tls", mode: 0o700)
            try Files.writeAtomically(stateDir + "/tls/fingerprint", m.fingerprint + "\n")
            return m
        case .selfSigned:
            let dir = stateDir + "/tls"
            let certPath = dir + "/cert.pem", keyPath = dir + "/key.pem"
            if let c = try? Files.readString(certPath), let k = try? Files.readString(keyPath),
               (try? check(c, k, what: "")) != nil, let fp = try? fingerprint(c) {
                try? Files.writeAtomically(dir + "/fingerprint", fp + "\n")
                return TLSMaterial(certPEM: c, keyPEM: k, fingerprint: fp)
            }
            let m = try generate(hostname: hostname)
            try Files.makeDirectories(dir, mode: 0o700)
            try Files.writeAtomically(keyPath, m.keyPEM, mode: 0o600)
            try Files.writeAtomically(certPath, m.certPEM, mode: 0o644)
            try Files.writeAtomically(dir + "/fingerprint", m.fingerprint + "\n", mode: 0o644)
            Log.info("panel: generated a self-signed certificate for \(hostname), SHA-256 \(m.fingerprint)")
            return m
        }
    }

    /// A new ECDSA P-256 key and a 10-year self-signed certificate naming
    /// `hostname`, localhost and the host's addresses.
    public static func generate(hostname: String, addresses: [String]? = nil) throws -> TLSMaterial {
        var ipBytes: [UInt8] = []
        var ipLens: [Int] = []
        for a in addresses ?? localAddresses() {
            if let b = parseIP(a) { ipBytes += b; ipLens.append(b.count) }
        }
        var certOut: UnsafeMutablePointer<CChar>? = nil
        var keyOut: UnsafeMutablePointer<CChar>? = nil
        let name = hostname.isEmpty ? "cloudbios" : hostname
        let rc = cb_tls_generate(name, ipBytes, ipLens, ipLens.count, &certOut, &keyOut)
        guard rc == 0, let certOut, let keyOut else {
            throw Failure(description: "generating a certificate failed: \(String(cString: cb_tls_error(rc)))")
        }
        defer { free(certOut); free(keyOut) }
        let c = String(cString: certOut), k = String(cString: keyOut)
        return TLSMaterial(certPEM: c, keyPEM: k, fingerprint: try fingerprint(c))
    }

    public static func fingerprint(_ certPEM: String) throws -> String {
        var out = [UInt8](repeating: 0, count: 32)
        let bytes = Array(certPEM.utf8)
        let rc = bytes.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { cb_tls_fingerprint($0.baseAddress, $0.count, &out) }
        }
        if rc != 0 { throw Failure(description: "cannot read the certificate: \(String(cString: cb_tls_error(rc)))") }
        return hex(out, uppercase: true, separator: ":")
    }

    static func check(_ cert: String, _ key: String, what: String) throws {
        let c = Array(cert.utf8), k = Array(key.utf8)
        let rc = c.withUnsafeBufferPointer { cp in
            k.withUnsafeBufferPointer { kp in
                cp.withMemoryRebound(to: CChar.self) { cc in
                    kp.withMemoryRebound(to: CChar.self) { kk in
                        cb_tls_check_pair(cc.baseAddress, cc.count, kk.baseAddress, kk.count)
                    }
                }
            }
        }
        if rc != 0 { throw Failure(description: "TLS certificate/key \(what) unusable: \(String(cString: cb_tls_error(rc)))") }
    }

    static func parseIP(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// 127.0.0.1, ::1 and every address of the host's interfaces.
    static func localAddresses() -> [String] {
        var out = ["127.0.0.1", "::1"]
        var ifa: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&ifa) == 0 else { return out }
        defer { freeifaddrs(ifa) }
        var p = ifa
        while let cur = p {
            defer { p = cur.pointee.ifa_next }
            guard let sa = cur.pointee.ifa_addr else { continue }
            var buf = [CChar](repeating: 0, count: 64)
            if Int32(sa.pointee.sa_family) == AF_INET {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { var a = $0.pointee.sin_addr; inet_ntop(AF_INET, &a, &buf, 64) }
            } else if Int32(sa.pointee.sa_family) == AF_INET6 {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { var a = $0.pointee.sin6_addr; inet_ntop(AF_INET6, &a, &buf, 64) }
            } else { continue }
            let s = String(nulTerminated: buf)
            if !s.isEmpty, !s.hasPrefix("fe80"), !out.contains(s) { out.append(s) }
        }
        return out
    }
}
