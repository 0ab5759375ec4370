import CTLS
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The fleet's certificates, whose trust derives from the cluster token.
///
/// The fleet's CA key is an Ed25519 key whose 32-byte seed is
/// HMAC-SHA256(token, "cloudbios fleet CA " + fleet name): every node that
/// holds the token derives the same CA key by itself, with nothing to
/// exchange, and nothing without the token can sign for the fleet. Each
/// node makes its own CA certificate from that key (same subject, same
/// key: each one verifies the others' leaves) and its own leaf (a fresh
/// Ed25519 key, naming its address, 127.0.0.1 and its node name), which
/// etcd presents on its peer and client ports and requires of its peers.
/// Certificates are made with `openssl` (carried in the payload).
public struct FleetPKI: Sendable {
    /// Where the files live (STATE/fleet/tls): ca.pem, ca.key, node.pem, node.key.
    public var directory: String
    public var caCert: String { directory + "/ca.pem" }
    public var caKey: String { directory + "/ca.key" }
    public var nodeCert: String { directory + "/node.pem" }
    public var nodeKey: String { directory + "/node.key" }

    public init(directory: String) { self.directory = directory }

    /// The CA key's seed for this token and fleet.
    public static func caSeed(token: String, fleet: String) -> [UInt8] {
        hmacSHA256(key: Array(token.utf8), message: Array("cloudbios fleet CA \(fleet)".utf8))
    }

    /// A secret of the fleet for `purpose`, derived from the token (the
    /// token itself never leaves the node).
    public static func secret(token: String, fleet: String, purpose: String) -> [UInt8] {
        hmacSHA256(key: Array(token.utf8), message: Array("cloudbios fleet \(purpose) \(fleet)".utf8))
    }

    /// The CA key as PKCS#8 PEM: the fixed DER prefix of an Ed25519
    /// private key, then the seed.
    public static func caKeyPEM(seed: [UInt8]) -> String {
        precondition(seed.count == 32)
        let der: [UInt8] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20] + seed
        return "-----BEGIN PRIVATE KEY-----\n" + Base64.encode(der) + "\n-----END PRIVATE KEY-----\n"
    }

    /// Writes the CA key and certificate and a new leaf for this node.
    public func make(token: String, fleet: String, node: String, addresses: [String]) throws(FleetError) {
        guard let openssl = Launcher.which("openssl") else { throw .certificate("openssl is not installed (it makes the fleet's certificates)") }
        do { try Files.makeDirectories(directory, mode: 0o700) } catch { throw .certificate("\(directory): \(error)") }
        do {
            try Files.writeAtomically(caKey, Self.caKeyPEM(seed: Self.caSeed(token: token, fleet: fleet)), mode: 0o600)
        } catch { throw .certificate("\(caKey): \(error)") }
        let conf = directory + "/leaf.cnf"
        var sans = ["DNS:\(node)", "IP:127.0.0.1"]
        for a in addresses where a != "127.0.0.1" { sans.append("IP:\(a)") }
        let ext = """
            basicConstraints = CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth, clientAuth
            subjectAltName = \(sans.joined(separator: ","))

            """
        do { try Files.writeAtomically(conf, ext, mode: 0o600) } catch { throw .certificate("\(conf): \(error)") }
        let csr = directory + "/node.csr"
        let steps: [[String]] = [
            ["req", "-new", "-x509", "-key", caKey, "-subj", "/O=CloudBIOS/CN=cloudbios fleet \(fleet) CA", "-days", "36500",
             "-set_serial", "1", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", caCert],
            ["genpkey", "-algorithm", "ed25519", "-out", nodeKey],
            ["req", "-new", "-key", nodeKey, "-subj", "/O=CloudBIOS/CN=\(node)", "-out", csr],
            ["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-set_serial", String(UInt32.random(in: 2...UInt32.max)),
             "-days", "36500", "-extfile", conf, "-out", nodeCert],
        ]
        for args in steps {
            let r: (status: Int32, output: String)
            do { r = try Launcher(openssl, args, environment: Launcher.defaultEnvironment + ["OPENSSL_CONF=/dev/null"]).run() } catch {
                throw .certificate("openssl \(args[0]): \(error)")
            }
            guard r.status == 0 else { throw .certificate("openssl \(args[0]) failed: \(r.output.suffix(300))") }
        }
        chmod(nodeKey, 0o600)
        Files.remove(csr)
        Files.remove(conf)
    }
}

/// SHA-256 of bytes (nettle, through the TLS loader).
func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    bytes.withUnsafeBytes { p in cb_sha256(p.baseAddress, p.count, &out) }
    return out
}

/// HMAC-SHA256 (RFC 2104).
func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
    var k = key.count > 64 ? sha256(key) : key
    k += [UInt8](repeating: 0, count: 64 - k.count)
    let inner = sha256(k.map { $0 ^ 0x36 } + message)
    return sha256(k.map { $0 ^ 0x5c } + inner)
}
