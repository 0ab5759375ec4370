#if canImport(Glibc)
import Glibc
#endif
import CBase

/// Launches programs with an explicit argv and environment (posix_spawn, no
/// shell, signal mask and handlers reset). The `Reaper` knows every child
/// from its spawn; whoever spawns waits for it (`wait`), registers an
/// `onExit` handler with the Reaper, or lets it go (`spawnDetached`).
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
    public func spawn(stdin: FileDescriptor? = nil, stdout: FileDescriptor? = nil, stderr: FileDescriptor? = nil) throws -> pid_t {
        let devnull = (try? FileDescriptor.open("/dev/null", O_RDWR))?.rawValue ?? -1
        defer { if devnull >= 0 { close(devnull) } }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        return try Reaper.shared.spawn {
            var pid: pid_t = 0
            let rc = cb_spawn(&pid, path, argv, envp, stdin?.rawValue ?? devnull,
                              stdout?.rawValue ?? devnull, stderr?.rawValue ?? devnull,
                              newSession ? 1 : 0)
            if rc != 0 { throw SystemError("spawn \(path)", errno: rc) }
            return pid
        }
    }

    /// Starts the program and lets it run on its own: nobody waits for it,
    /// and the `Reaper` drops its status.
    public func spawnDetached() throws {
        Reaper.shared.detach(try spawn())
    }

    /// Runs the program to completion, capturing stdout and stderr (merged
    /// when `mergeError`). Blocks the calling thread.
    public func run(mergeError: Bool = true) throws -> (status: Int32, output: String) {
        try run(mergeError: mergeError, stdin: nil)
    }

    /// The same with standard input from `stdin`.
    public func run(mergeError: Bool = true, stdin: FileDescriptor?) throws -> (status: Int32, output: String) {
        let output = try FileDescriptor.pipe()
        let pid: pid_t
        do {
            pid = try spawn(stdin: stdin, stdout: output.write, stderr: mergeError ? output.write : nil)
        } catch {
            output.read.close(); output.write.close(); throw error
        }
        output.write.close()
        let out = (try? output.read.readToEnd(what: "read the output of \(path)")) ?? []
        output.read.close()
        let status = Launcher.wait(pid)
        return (status, String(decoding: out, as: UTF8.self))
    }

    /// Waits for a child (through the `Reaper`); returns its exit status
    /// (128+signal when killed), -1 when it is no child of ours.
    public static func wait(_ pid: pid_t) -> Int32 {
        Reaper.shared.wait(pid) ?? -1
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

/// Statuses of children that code outside the `Reaper` reaped with a raw
/// waitpid, handed in so that the thread waiting for the child still gets
/// its status instead of ECHILD.
public enum ReapedChildren {
    public static func record(_ pid: pid_t, status: Int32) {
        Reaper.shared.handIn(pid, status: status)
    }

    public static func take(_ pid: pid_t) -> Int32? {
        Reaper.shared.take(pid)
    }
}
