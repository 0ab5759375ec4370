#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Synchronization

/// The machine's own `users.yaml` (see `LocalUsers`): where it is, reading
/// it, and writing it — on a read-only config volume by remounting it
/// read-write for the write. Its place can move once, when the first-run
/// setup saves it to a new CBCONFIG partition.
public final class UserStore: Sendable {
    private let location = Mutex<String>("")

    public init(path: String) { location.withLock { $0 = path } }

    public var path: String { location.withLock { $0 } }

    /// Whether the file outlives a reboot (a volume, not RAM).
    public var persistent: Bool { !Mount.isVolatile(Files.parent(of: path)) }

    /// The users in the file; none when it is missing. A broken file is
    /// reported and read as empty (the config's users still work).
    public func load() -> [PanelUser] {
        let p = path
        guard let text = try? Files.readString(p) else { return [] }
        do { return try LocalUsers.parse(path: p, text: text) } catch {
            Log.error("panel: \(error.description)")
            return []
        }
    }

    /// Adds `user`, or replaces the user of that name.
    public func upsert(_ user: PanelUser) throws {
        var users = load().filter { $0.name != user.name }
        users.append(user)
        try save(users)
    }

    public func save(_ users: [PanelUser]) throws {
        let p = path
        try Mount.withWritable(p) {
            try Files.makeDirectories(Files.parent(of: p))
            try Files.writeAtomically(p, LocalUsers.render(users), mode: 0o600)
        }
    }

    /// Moves the file to `newPath` (already written there).
    public func move(to newPath: String) { location.withLock { $0 = newPath } }

    /// What the file's state is now (changes when anyone rewrites it).
    func stamp() -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return path + ":none" }
        return "\(path):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec):\(st.st_mtim.tv_nsec)"
    }
}

/// Who may log in: the config's `panel.users` and the machine's own
/// `users.yaml` (first-run setup, host console menu), read again whenever
/// that file changes — so a password set on the console applies at once.
/// A name in both is the config's.
public final class UserDirectory: Sendable {
    public let configUsers: [PanelUser]
    public let store: UserStore?
    private struct Cache { var stamp = ""; var checked = -1.0; var users: [String: PanelUser] = [:] }
    private let cache = Mutex(Cache())

    public init(config: [PanelUser], store: UserStore?) {
        self.configUsers = config
        self.store = store
    }

    /// Every user, by name.
    public func all() -> [String: PanelUser] {
        let now = Clock.monotonic()
        if let c = cache.withLock({ $0.checked >= 0 && now - $0.checked < 0.5 ? $0.users : nil }) { return c }
        let stamp = store?.stamp() ?? ""
        if let c = cache.withLock({ s -> [String: PanelUser]? in
            guard s.checked >= 0, s.stamp == stamp else { return nil }
            s.checked = now
            return s.users
        }) { return c }
        var users: [String: PanelUser] = [:]
        for u in store?.load() ?? [] { users[u.name] = u }
        for u in configUsers { users[u.name] = u }
        let result = users
        cache.withLock { $0 = Cache(stamp: stamp, checked: now, users: result) }
        return result
    }

    public func passwordHash(_ name: String) -> String? { all()[name]?.passwordHash }

    public var isEmpty: Bool { all().isEmpty }

    /// Forgets what was read, so the next look reads the file.
    public func invalidate() { cache.withLock { $0.checked = -1 } }
}
