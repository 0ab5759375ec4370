#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CShims

/// Launches programs with an explicit argv and environment (posix_spawn, no
/// shell, signal mask and handlers reset). The caller that spawns reaps.
public struct Launcher: Sendable {
    public var path: String
    public var arguments: [String]
    public var environment: [String]
    public var newSession: Bool

    public init(_ path: String, _ arguments: [String], environment: [String] = Launcher.defaultEnvironment, newSession: Bool = true) {
        self.path = path
        self.arguments = arguments
        self.environment = environment
        self.newSession = newSession
    }

    public static let defaultEnvironment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"]

    /// Starts the program with stdin from /dev/null and stdout/stderr to the
    /// given descriptors (or /dev/null). Returns its pid.
    public func spawn(stdin: Int32 = -1, stdout: Int32 = -1, stderr: Int32 = -1) throws -> pid_t {
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if devnull >= 0 { close(devnull) } }
        var pid: pid_t = 0
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        let rc = cb_spawn(&pid, path, argv, envp, stdin >= 0 ? stdin : devnull,
                          stdout >= 0 ? stdout : devnull, stderr >= 0 ? stderr : devnull,
                          newSession ? 1 : 0)
        if rc != 0 { throw SystemError("spawn \(path)", errno: rc) }
        return pid
    }

    /// Runs the program to completion, capturing stdout and stderr (merged
    /// when `mergeError`). Blocks the calling thread.
    public func run(mergeError: Bool = true) throws -> (status: Int32, output: String) {
        try run(mergeError: mergeError, stdin: -1)
    }

    /// The same with standard input from `stdin`.
    public func run(mergeError: Bool = true, stdin: Int32) throws -> (status: Int32, output: String) {
        var fds: [Int32] = [0, 0]
        try syscall("pipe") { pipe(&fds) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC); _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let pid: pid_t
        do {
            pid = try spawn(stdin: stdin, stdout: fds[1], stderr: mergeError ? fds[1] : -1)
        } catch {
            close(fds[0]); close(fds[1]); throw error
        }
        close(fds[1])
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n > 0 { out.append(contentsOf: buf[0..<n]); continue }
            if n < 0 && currentErrno() == EINTR { continue }
            break
        }
        close(fds[0])
        let status = Launcher.wait(pid)
        return (status, String(decoding: out, as: UTF8.self))
    }

    /// Waits for a child; returns its exit status (128+signal when killed).
    /// A child that a reaper on another thread collected first (PID 1's
    /// waitpid(-1)) is found in `ReapedChildren`.
    public static func wait(_ pid: pid_t) -> Int32 {
        var st: Int32 = 0
        while true {
            if waitpid(pid, &st, 0) == pid { return exitCode(st) }
            switch currentErrno() {
            case EINTR: continue
            case ECHILD:
                // the reaper records the status right after its waitpid
                for _ in 0..<200 {
                    if let s = ReapedChildren.take(pid) { return s }
                    usleep(5_000)
                }
                return -1
            default: return -1
            }
        }
    }

    public static func exitCode(_ st: Int32) -> Int32 {
        if st & 0x7f == 0 { return (st >> 8) & 0xff }
        return 128 + (st & 0x7f)
    }

    /// Finds a program on PATH.
    public static func which(_ name: String, path: String? = nil) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let p = path ?? (getenv("PATH").map { String(cString: $0) } ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        for dir in p.split(separator: ":") {
            let c = "\(dir)/\(name)"
            if access(c, X_OK) == 0 { return c }
        }
        return nil
    }
}

/// True when a process with this pid exists (and is not a zombie we own).
public func processAlive(_ pid: pid_t) -> Bool {
    guard pid > 0 else { return false }
    if kill(pid, 0) != 0 && currentErrno() == ESRCH { return false }
    if let s = Files.readTrimmed("/proc/\(pid)/stat"), let r = s.split(separator: ")").last?.split(separator: " ").first {
        return r != "Z" && r != "X"
    }
    return true
}

/// Exit statuses of children a reaper collected with waitpid(-1) that it does
/// not own (PID 1 reaps every orphan while its payload thread runs `mount`
/// and `modprobe`): the thread waiting for one of them takes its status here
/// instead of losing it to ECHILD.
public enum ReapedChildren {
    private static let statuses = Mutex<[pid_t: Int32]>([:])

    public static func record(_ pid: pid_t, status: Int32) {
        statuses.withLock { s in
            if s.count >= 256 { s.removeAll() }  // nobody waited for those
            s[pid] = status
        }
    }

    public static func take(_ pid: pid_t) -> Int32? {
        statuses.withLock { $0.removeValue(forKey: pid) }
    }
}
