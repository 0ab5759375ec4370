#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// The web panel and REST API: an HTTP(S) server on `panel.listen` in front
/// of a `PanelBackend`.
public final class PanelServer: @unchecked Sendable {
    public let config: PanelConfig
    public let stateDir: String
    public let webRoot: String
    public let api: PanelAPI
    /// Present when TLS is on.
    public let tls: TLSMaterial?
    private var server: HTTPServer?
    private let lock = Lock()
    /// The port actually bound (differs from the config when it asked for 0).
    public private(set) var port: Int = 0
    public var host: String { config.host }
    public var usesTLS: Bool { tls != nil }
    /// SHA-256 fingerprint of the certificate (colon-separated uppercase hex).
    public var tlsFingerprint: String? { tls?.fingerprint }

    /// `http(s)://HOST:PORT` as a client on this machine reaches it.
    public var url: String {
        var h = config.host
        if h == "0.0.0.0" { h = "127.0.0.1" } else if h == "::" { h = "::1" }
        if h.contains(":") { h = "[\(h)]" }
        return "\(usesTLS ? "https" : "http")://\(h):\(port)"
    }

    /// Loads or creates the TLS material (`<stateDir>/tls/`), and restores
    /// sessions from `<stateDir>/sessions`. Does not listen yet.
    public init(config: PanelConfig, stateDir: String, webRoot: String?, backend: any PanelBackend,
                version: String = "dev", hostname: String? = nil,
                userStore: UserStore? = nil, firstRun: FirstRun.Options? = nil) throws {
        self.config = config
        self.stateDir = stateDir
        self.webRoot = StaticFiles.resolveWebRoot(webRoot)
        try Files.makeDirectories(stateDir)
        let host = hostname ?? PanelServer.systemHostname()
        self.tls = try TLSMaterial.load(config.tls, stateDir: stateDir, hostname: host)
        for u in config.users where !PasswordHash.isSupported(u.passwordHash) {
            Log.warning("panel: user '\(u.name)' has a password hash this system cannot verify; that user cannot log in")
        }
        let directory = UserDirectory(config: config.users, store: userStore)
        let setup = firstRun.map { FirstRun(users: directory, options: $0) }
        if directory.isEmpty && setup == nil { Log.warning("panel: no users configured (panel.users); nobody can log in") }
        let sessions = SessionStore(persistPath: stateDir + "/sessions")
        self.api = PanelAPI(backend: backend, users: config.users, tls: tls != nil, version: version,
                            webRoot: self.webRoot, sessions: sessions, directory: directory, firstRun: setup)
    }

    /// Binds `panel.listen` and starts serving.
    public func start() throws {
        try lock.withLock {
            guard server == nil else { return }
            signal(SIGPIPE, SIG_IGN)
            guard let hp = HostPort.parse(config.listen) else {
                throw SystemError("panel.listen '\(config.listen)' is not HOST:PORT", errno: EINVAL)
            }
            let (fd, boundPort, v6) = try PanelServer.listenSocket(host: hp.host, port: hp.port)
            let s = HTTPServer(api: api)
            do {
                let threads = max(2, min(8, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
                try s.start(listenFD: fd, ipv6: v6, threads: threads, tls: tls)
            } catch {
                close(fd)
                throw error
            }
            server = s
            port = boundPort
            Log.info("panel: listening on \(url)" + (tls.map { " (TLS, SHA-256 \($0.fingerprint))" } ?? ""))
            if let f = api.firstRun, let code = f.currentCode() {
                // the machine's own consoles: PID 1 relays this to serial and the screen
                Log.info("first run: no panel user yet; open the panel (port \(port)) and enter the setup code \(code) to create the first admin")
            }
        }
    }

    /// Stops serving; in-flight requests get a short grace period.
    public func stop() {
        let s = lock.withLock { () -> HTTPServer? in
            let s = server
            server = nil
            return s
        }
        s?.stop()
    }

    deinit { stop() }

    static func systemHostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, 255) == 0 else { return "cloudbios" }
        let s = String(nulTerminated: buf)
        return s.isEmpty ? "cloudbios" : s
    }

    /// A bound, listening TCP socket for an IP literal (or `localhost`).
    static func listenSocket(host: String, port: Int) throws -> (fd: Int32, port: Int, ipv6: Bool) {
        let h = host == "localhost" ? "127.0.0.1" : host
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        let isV6: Bool
        if inet_pton(AF_INET, h, &v4.sin_addr) == 1 {
            isV6 = false
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
        } else if inet_pton(AF_INET6, h, &v6.sin6_addr) == 1 {
            isV6 = true
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
        } else {
            throw SystemError("panel.listen host '\(host)' is not an IP address", errno: EINVAL)
        }
        let fd = try syscall("socket") {
            socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc: Int32 = isV6
            ? withUnsafePointer(to: &v6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            : withUnsafePointer(to: &v4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 {
            let e = currentErrno()
            close(fd)
            throw SystemError("bind \(host):\(port)", errno: e)
        }
        if listen(fd, 512) != 0 {
            let e = currentErrno()
            close(fd)
            throw SystemError("listen \(host):\(port)", errno: e)
        }
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let bound: Int = withUnsafePointer(to: &ss) { p in
            isV6 ? p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
                 : p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        return (fd, bound, isV6)
    }
}
