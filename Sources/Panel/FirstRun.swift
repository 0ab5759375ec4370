#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Synchronization

/// The first run: while no panel user exists, a one-time setup code —
/// random, shown only on the machine's own consoles (status screen and
/// serial), valid until used — lets the first visitor of the panel create
/// the first admin. Wrong codes are throttled per address and overall.
public final class FirstRun: Sendable {
    /// What a first-run setup asks for.
    public struct Request: Sendable, Equatable {
        public var code: String
        public var user: String
        public var password: String
        public var save: Bool
        public var sshAuthorizedKeys: [String]
    }

    /// Why a setup was refused; `Panel` maps these to HTTP statuses.
    public enum Refusal: Error, Sendable, Equatable {
        case done
        case throttled(retryAfter: Int)
        case wrongCode
        case invalid(String)
        case failed(String)
    }

    /// Where the admin made at first run is kept.
    public struct Outcome: Sendable, Equatable {
        /// `config` (the config volume: installed config partition or a
        /// CBCONFIG volume), `stick` (a CBCONFIG partition made now on the
        /// boot stick) or `ram` (gone at the next boot).
        public var storage: String
        public var message: String
    }

    public struct Options: Sendable {
        /// Where the code is written (0600) for the status screen to show.
        public var codeFile: String?
        /// Why `save: true` cannot keep the admin on the boot medium (a CD,
        /// no boot medium); nil when it can.
        public var saveBlocker: String?
        /// Adds a CBCONFIG partition to the boot stick holding these files
        /// (name → text); returns the directory they are in now.
        public var saveToStick: (@Sendable ([String: String]) throws -> String)?
        public init(codeFile: String? = nil, saveBlocker: String? = "no writable boot medium",
                    saveToStick: (@Sendable ([String: String]) throws -> String)? = nil) {
            self.codeFile = codeFile; self.saveBlocker = saveBlocker; self.saveToStick = saveToStick
        }
    }

    public static let minPasswordLength = 8
    public static let codeHint = "the one-time setup code is shown on this machine's screen (the host console, Ctrl+Alt+F12) and serial console"
    public static let requiredMessage = "setup required: open the panel's first page and create the first admin; " + codeHint
    /// Crockford's base32 without I, L, O, U: nothing to misread on a screen.
    static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    public let users: UserDirectory
    public let options: Options
    private let code = Mutex<String?>(nil)
    private let busy = Mutex(false)
    let perAddress = RateLimiter(maxFailures: 5, window: 60)
    /// Across all addresses: 40 random bits cannot be walked from many.
    let overall = RateLimiter(maxFailures: 30, window: 60)

    public init(users: UserDirectory, options: Options) {
        self.users = users
        self.options = options
    }

    /// Whether the machine still waits for its first admin.
    public var pending: Bool { users.isEmpty }

    /// The setup code, made on first use (or kept from the code file of an
    /// earlier start of the daemon) and written for the consoles; nil once
    /// a user exists.
    @discardableResult
    public func currentCode() -> String? {
        guard pending else {
            clearCode()
            return nil
        }
        return code.withLock { c in
            if let c { return c }
            var made = options.codeFile.flatMap { Files.readTrimmed($0) }.flatMap { Self.normalize($0) }.map(Self.format)
            if made == nil {
                let b = Random.bytes(8)
                made = Self.format(String(decoding: b.map { Self.alphabet[Int($0) & 31] }, as: UTF8.self))
                if let f = options.codeFile { try? Files.writeAtomically(f, made! + "\n", mode: 0o600) }
            }
            c = made
            return made
        }
    }

    private func clearCode() {
        code.withLock { $0 = nil }
        if let f = options.codeFile, Files.exists(f) { Files.remove(f) }
    }

    /// `XXXX-XXXX`.
    static func format(_ raw: String) -> String { String(raw.prefix(4)) + "-" + String(raw.dropFirst(4).prefix(4)) }

    /// The code as typed (any case, with or without the dash or spaces) in
    /// its 8 characters; nil when it cannot be one.
    static func normalize(_ typed: String) -> String? {
        var out: [UInt8] = []
        for c in typed.uppercased().utf8 where c != UInt8(ascii: "-") && c != UInt8(ascii: " ") {
            switch c {
            case UInt8(ascii: "O"): out.append(UInt8(ascii: "0"))
            case UInt8(ascii: "I"), UInt8(ascii: "L"): out.append(UInt8(ascii: "1"))
            default:
                guard alphabet.contains(c) else { return nil }
                out.append(c)
            }
        }
        return out.count == 8 ? String(decoding: out, as: UTF8.self) : nil
    }

    /// Where the admin will be kept, for the setup page.
    public var storage: (storage: String, canSave: Bool, note: String) {
        if users.store?.persistent == true {
            return ("config", false, "The admin is kept on this machine's config volume (\(LocalUsers.fileName)).")
        }
        if let why = options.saveBlocker {
            return ("ram", false, "The admin lives in RAM until the next boot: \(why).")
        }
        return ("ram", true, "Check \"save\" to keep the admin on the boot stick (a small CBCONFIG partition in its free space); otherwise it lives in RAM until the next boot.")
    }

    /// Creates the first admin. Throws a `Refusal`.
    public func setup(_ r: Request, from address: String) throws(Refusal) -> Outcome {
        guard pending else { throw .done }
        let ipKey = "ip:" + address
        if let wait = [perAddress.retryAfter(ipKey), overall.retryAfter("all")].compactMap({ $0 }).max() {
            throw .throttled(retryAfter: wait)
        }
        guard let want = currentCode(), let typed = Self.normalize(r.code),
              constantTimeEqual(typed, want.replacingDash()) else {
            perAddress.recordFailure(ipKey)
            overall.recordFailure("all")
            Log.warning("panel: wrong setup code from \(address)")
            throw .wrongCode
        }
        if let e = Names.checkUser(r.user) { throw .invalid(e) }
        guard r.password.utf8.count >= Self.minPasswordLength else {
            throw .invalid("the password must have at least \(Self.minPasswordLength) characters")
        }
        guard r.password.utf8.count <= 1024 else { throw .invalid("the password is too long (1024 bytes at most)") }
        for k in r.sshAuthorizedKeys { if let e = Names.checkSSHKey(k) { throw .invalid(e) } }
        guard let store = users.store else { throw .failed("this panel has no place for users (no users file)") }
        // one setup at a time: the second is asked to try again
        guard busy.withLock({ b in if b { return false }; b = true; return true }) else { throw .throttled(retryAfter: 1) }
        defer { busy.withLock { $0 = false } }
        let hash: String
        do { hash = try PasswordHash.make(r.password) } catch { throw .failed("cannot hash the password: \(error)") }
        let user = PanelUser(name: r.user, passwordHash: hash, sshAuthorizedKeys: r.sshAuthorizedKeys)
        var outcome = Outcome(storage: store.persistent ? "config" : "ram", message: "")
        var saveError: String?
        if r.save && !store.persistent {
            if let why = options.saveBlocker { saveError = why }
            else if let save = options.saveToStick {
                do {
                    let dir = try save(["cloudbios.yaml": "version: 1\n", LocalUsers.fileName: LocalUsers.render([user])])
                    store.move(to: dir + "/" + LocalUsers.fileName)
                    outcome.storage = "stick"
                } catch {
                    saveError = "\(error)"
                }
            }
        }
        if outcome.storage != "stick" {
            do { try store.upsert(user) } catch { throw .failed("cannot keep the user: \(error)") }
        }
        users.invalidate()
        perAddress.reset(ipKey)
        clearCode()
        switch outcome.storage {
        case "config": outcome.message = "Admin '\(r.user)' created and kept on the config volume."
        case "stick": outcome.message = "Admin '\(r.user)' created and saved to a CBCONFIG partition on the boot stick; the next boot uses it."
        default:
            outcome.message = "Admin '\(r.user)' created in RAM: it is gone at the next boot"
                + (saveError.map { " (not saved: \($0))" } ?? "") + "."
        }
        Log.info("panel: first run: \(outcome.message)")
        return outcome
    }
}

extension String {
    func replacingDash() -> String { String(filter { $0 != "-" }) }
}
