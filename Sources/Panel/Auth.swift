#if canImport(Glibc)
import Glibc
#endif
import CTLS
import Config
import Platform

/// crypt(3) through libcrypt (libxcrypt): sha512-crypt and yescrypt.
public enum PasswordHash {
    /// True when `password` matches `hash` (constant-time comparison).
    public static func verify(_ password: String, hash: String) -> Bool {
        cb_crypt_verify(password, hash) == 1
    }

    /// True when libcrypt understands the hash's method.
    public static func isSupported(_ hash: String) -> Bool {
        cb_crypt_verify("", hash) >= 0
    }

    /// A new hash with a random salt; `prefix` "$6$" (sha512-crypt) or "$y$" (yescrypt).
    public static func make(_ password: String, prefix: String = "$6$") throws -> String {
        var buf = [CChar](repeating: 0, count: 512)
        let rc = cb_crypt_hash(password, prefix, &buf, buf.count)
        if rc != 0 { throw SystemError("crypt", errno: Int32(rc)) }
        return String(nulTerminated: buf)
    }
}

enum Random {
    static func bytes(_ n: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: n)
        let rc = b.withUnsafeMutableBytes { cb_random($0.baseAddress, n) }
        precondition(rc == 0, "getrandom failed")
        return b
    }

    /// URL-safe random token (hex).
    static func token(_ n: Int = 32) -> String { hex(bytes(n)) }
}

func hex(_ bytes: [UInt8], uppercase: Bool = false, separator: String = "") -> String {
    let digits: StaticString = uppercase ? "0123456789ABCDEF" : "0123456789abcdef"
    let sep = Array(separator.utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * (2 + sep.count))
    digits.withUTF8Buffer { d in
        for (i, b) in bytes.enumerated() {
            if i > 0 { out.append(contentsOf: sep) }
            out.append(d[Int(b >> 4)])
            out.append(d[Int(b & 15)])
        }
    }
    return String(decoding: out, as: UTF8.self)
}

func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    bytes.withUnsafeBytes { p in cb_sha256(p.baseAddress, p.count, &out) }
    return out
}

/// Constant-time string equality.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}

/// A logged-in user's session.
public struct Session: Sendable, Equatable {
    /// The bearer token (known in memory only while a request carries it).
    public var token: String
    public var csrf: String
    public var user: String
    public var created: Double
    public var lastUsed: Double

    /// When it expires if unused: idle timeout, capped by the absolute lifetime.
    public func expires(idle: Double, absolute: Double) -> Double {
        min(lastUsed + idle, created + absolute)
    }
}

/// The SHA-256 of a session's token: what sessions are known by, in
/// memory and (as hex) on disk.
struct TokenDigest: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(token: String) {
        var t = token
        t.withUTF8 { u in withUnsafeMutableBytes(of: &words) { cb_sha256(u.baseAddress, u.count, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) } }
    }

    /// From the 64 hex digits `hex` writes; nil for anything else.
    init?(hex text: String) {
        let u = Array(text.utf8)
        guard u.count == 64 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var ok = true
        withUnsafeMutableBytes(of: &words) { w in
            for i in 0..<32 {
                guard let h = nibble(u[2 * i]), let l = nibble(u[2 * i + 1]) else { ok = false; return }
                w[i] = h << 4 | l
            }
        }
        if !ok { return nil }
    }

    var hex: String { withUnsafeBytes(of: words) { Panel.hex(Array($0)) } }

    static func == (a: TokenDigest, b: TokenDigest) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    func hash(into h: inout Hasher) { h.combine(words.0); h.combine(words.1); h.combine(words.2); h.combine(words.3) }
}

/// Sessions in memory, optionally persisted (0600) so a daemon restart does
/// not log everyone out. Tokens are stored only as SHA-256 digests on disk.
public final class SessionStore: @unchecked Sendable {
    public let idleTimeout: Double
    public let absoluteTimeout: Double
    private let lock = Lock()
    private var sessions: [TokenDigest: Session] = [:]
    private let clock: @Sendable () -> Double
    private let persistPath: String?

    public init(idleTimeout: Double = 12 * 3600, absoluteTimeout: Double = 7 * 24 * 3600,
                persistPath: String? = nil, clock: @escaping @Sendable () -> Double = { Clock.wall() }) {
        self.idleTimeout = idleTimeout
        self.absoluteTimeout = absoluteTimeout
        self.clock = clock
        self.persistPath = persistPath
        load()
    }

    public func create(user: String) -> Session {
        let now = clock()
        var s = Session(token: Random.token(), csrf: Random.token(16), user: user, created: now, lastUsed: now)
        let key = TokenDigest(token: s.token)
        let token = s.token
        s.token = ""
        lock.withLock {
            purgeLocked(now)
            sessions[key] = s
        }
        s.token = token
        save()
        return s
    }

    /// The live session for a token (refreshing its idle timer), or nil.
    public func lookup(_ token: String) -> Session? {
        guard token.utf8.count == 64 else { return nil }
        let now = clock()
        let key = TokenDigest(token: token)
        return lock.withLock {
            guard var s = sessions[key] else { return nil }
            if s.expires(idle: idleTimeout, absolute: absoluteTimeout) <= now {
                sessions[key] = nil
                return nil
            }
            s.lastUsed = now
            sessions[key] = s
            s.token = token
            return s
        }
    }

    /// Sessions are keyed (and persisted) by the SHA-256 of their token.
    static func key(_ token: String) -> String { TokenDigest(token: token).hex }

    public func remove(_ token: String) {
        let key = TokenDigest(token: token)
        lock.withLock { sessions[key] = nil }
        save()
    }

    /// Drops every session of users that no longer exist.
    public func retain(users: Set<String>) {
        lock.withLock { sessions = sessions.filter { users.contains($0.value.user) } }
    }

    public var count: Int { lock.withLock { sessions.count } }

    public func expiry(of s: Session) -> Double { s.expires(idle: idleTimeout, absolute: absoluteTimeout) }

    private func purgeLocked(_ now: Double) {
        sessions = sessions.filter { $0.value.expires(idle: idleTimeout, absolute: absoluteTimeout) > now }
    }

    // Persistence: one line per session, "sha256(token) csrf user created
    // lastUsed"; the file is 0600 in the state dir.
    private func save() {
        guard let persistPath else { return }
        let text = lock.withLock {
            sessions.map { "\($0.key.hex) \($0.value.csrf) \($0.value.user) \(Int($0.value.created)) \(Int($0.value.lastUsed))\n" }.joined()
        }
        try? Files.writeAtomically(persistPath, text, mode: 0o600)
    }

    private func load() {
        guard let persistPath, let text = try? Files.readString(persistPath) else { return }
        let now = clock()
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            guard f.count == 5, let key = TokenDigest(hex: f[0]), Names.checkUser(f[2]) == nil,
                  let c = Double(f[3]), let l = Double(f[4]) else { continue }
            let s = Session(token: "", csrf: f[1], user: f[2], created: c, lastUsed: l)
            if s.expires(idle: idleTimeout, absolute: absoluteTimeout) > now { sessions[key] = s }
        }
    }
}

/// Failed-login throttling per key (client IP, user name): at most
/// `maxFailures` in a sliding `window`; then refused until the oldest ages out.
public final class RateLimiter: @unchecked Sendable {
    public let maxFailures: Int
    public let window: Double
    private let lock = Lock()
    private var failures: [String: [Double]] = [:]
    private let clock: @Sendable () -> Double

    public init(maxFailures: Int = 5, window: Double = 60, clock: @escaping @Sendable () -> Double = { Clock.monotonic() }) {
        self.maxFailures = maxFailures
        self.window = window
        self.clock = clock
    }

    /// Seconds to wait before trying again, or nil when allowed.
    public func retryAfter(_ key: String) -> Int? {
        let now = clock()
        return lock.withLock {
            let recent = (failures[key] ?? []).filter { $0 > now - window }
            failures[key] = recent.isEmpty ? nil : recent
            guard recent.count >= maxFailures, let oldest = recent.first else { return nil }
            return max(1, Int((oldest + window - now).rounded(.up)))
        }
    }

    public func recordFailure(_ key: String) {
        let now = clock()
        lock.withLock {
            var r = (failures[key] ?? []).filter { $0 > now - window }
            r.append(now)
            if r.count > maxFailures * 4 { r.removeFirst(r.count - maxFailures * 4) }
            failures[key] = r
            if failures.count > 100_000 { failures = failures.filter { !$0.value.isEmpty && $0.value.last! > now - window } }
        }
    }

    public func reset(_ key: String) { lock.withLock { failures[key] = nil } }
}

/// How a request proved who it is.
public enum Credential: Sendable, Equatable {
    case bearer(Session)
    case cookie(Session)
    case queryToken(Session)

    public var session: Session {
        switch self { case .bearer(let s), .cookie(let s), .queryToken(let s): return s }
    }
}

public enum AuthDecision: Sendable, Equatable {
    case allowed(Credential?)
    case denied(status: Int, message: String)
}

public enum AuthPolicy {
    public static let cookieName = "cloudbios_session"
    public static let csrfHeader = "x-csrf-token"

    static func isStateChanging(_ method: String) -> Bool {
        method == "POST" || method == "PUT" || method == "DELETE" || method == "PATCH"
    }

    /// Who is asking and whether they may. Public routes pass without a
    /// credential (but one is still resolved when present).
    public static func authorize(_ head: RequestHead, route: Route, sessions: SessionStore) -> AuthDecision {
        var credential: Credential?
        if let auth = head.header("authorization") {
            let parts = auth.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                guard let s = sessions.lookup(parts[1].trimmingSpaces) else {
                    return route.isPublic ? .allowed(nil) : .denied(status: 401, message: "invalid or expired token")
                }
                credential = .bearer(s)
            }
        }
        if credential == nil, let c = head.cookies[cookieName], let s = sessions.lookup(c) {
            credential = .cookie(s)
        }
        if credential == nil, route.isWebSocket, let t = head.query["token"], let s = sessions.lookup(t) {
            credential = .queryToken(s)
        }
        if route.isPublic { return .allowed(credential) }
        guard let credential else { return .denied(status: 401, message: "authentication required") }
        if case .cookie(let s) = credential {
            if isStateChanging(head.method) {
                guard let t = head.header(csrfHeader), constantTimeEqual(t, s.csrf) else {
                    return .denied(status: 403, message: "missing or wrong X-CSRF-Token header")
                }
            }
            if route.isWebSocket, let origin = head.header("origin"), !originMatchesHost(origin, head.header("host")) {
                return .denied(status: 403, message: "cross-origin WebSocket refused")
            }
        }
        return .allowed(credential)
    }

    /// `Origin: https://h:p` matches `Host: h:p`.
    public static func originMatchesHost(_ origin: String, _ host: String?) -> Bool {
        guard let host, !host.isEmpty else { return false }
        guard let r = origin.firstRange(of: "://") else { return false }
        return origin[r.upperBound...].lowercased() == host.lowercased()
    }
}
