#if canImport(Glibc)
import Glibc
#endif
import CAppInit
import Config
import Platform

/// PID 1 of an app's microVM (`cloudbios app-init`, the initramfs's
/// `/app-init`): loads the virtio, erofs and overlay modules listed in
/// `/modules.order`, mounts the image's root (`/dev/vda`, erofs, read-only)
/// under a tmpfs overlay, reads the launch (`/dev/vdb`), switches into the
/// root, brings up the user-net address, and runs the app as its only
/// child of note, its output on the `cb.log` port. It reaps every process,
/// answers control requests (exec, stop) on the `cb.ctl` port, and when the
/// app ends writes `[cloudbios] app exited: CODE` on the log and reboots
/// (QEMU runs with -no-reboot, so the VM ends).
public enum AppInit {
    public static let exitMarker = "[cloudbios] app exited: "
    static let ipAddress: UInt32 = 0x0a00_020f  // 10.0.2.15, user-net's first lease
    static let gateway: UInt32 = 0x0a00_0202
    static let dns = "10.0.2.3"

    public static func run() -> Never {
        var log: Int32 = 2
        func say(_ s: String) { _ = s.withCString { write(log, $0, strlen($0)) } }
        func fail(_ s: String) -> Never {
            say("[cloudbios] app-init: \(s)\n")
            say(exitMarker + "125\n")
            _ = cb_app_reboot()
            while true { pause() }
        }
        mkdir("/proc", 0o755); mkdir("/sys", 0o755); mkdir("/dev", 0o755)
        _ = mount("proc", "/proc", "proc", 0, nil)
        _ = mount("sysfs", "/sys", "sysfs", 0, nil)
        _ = mount("devtmpfs", "/dev", "devtmpfs", 0, nil)
        let console = open("/dev/console", O_WRONLY | O_CLOEXEC)
        if console >= 0 { log = console }
        signal(SIGPIPE, SIG_IGN)

        let cmdline = Files.readTrimmed("/proc/cmdline") ?? ""
        let mmioDevices = cmdline.split(separator: " ").filter { $0.hasPrefix("virtio_mmio.device=") }
            .map { "device=" + $0.dropFirst("virtio_mmio.device=".count) }.joined(separator: " ")
        for line in (Files.readTrimmed("/modules.order") ?? "").split(separator: "\n") {
            let path = "/lib/modules/" + line
            let params = line.hasSuffix("/virtio_mmio.ko") ? mmioDevices : ""
            let rc = cb_app_load_module(path, params)
            if rc != 0 { say("[cloudbios] app-init: module \(line): \(String(cString: strerror(rc)))\n") }
        }
        trace("modules loaded")
        let deadline = Clock.monotonic() + 10
        while !(Files.exists("/dev/vda") && Files.exists("/dev/vdb")), Clock.monotonic() < deadline { usleep(5_000) }
        if let port = findPort("cb.log") {
            let fd = open(port, O_WRONLY | O_CLOEXEC)
            if fd >= 0 { log = fd }
        }
        trace("disks \(Files.exists("/dev/vda")) \(Files.exists("/dev/vdb")), log port \(log)")
        let launch: AppLaunch
        do {
            let raw = try Files.read("/dev/vdb", limit: 1 << 20)
            launch = try AppLaunch.parse(Array(raw.prefix { $0 != 0 }))
        } catch {
            fail("the launch disk: \(error)")
        }
        for d in ["/lower", "/rw", "/newroot"] { mkdir(d, 0o755) }
        guard mount("/dev/vda", "/lower", "erofs", UInt(MS_RDONLY), nil) == 0 else { fail("mount the image: \(errnoText())") }
        guard mount("tmpfs", "/rw", "tmpfs", 0, "mode=0755") == 0 else { fail("tmpfs: \(errnoText())") }
        mkdir("/rw/upper", 0o755); mkdir("/rw/work", 0o755)
        guard mount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work") == 0 else {
            fail("overlay: \(errnoText())")
        }
        for d in ["proc", "sys", "dev", "tmp", "etc", "run"] { mkdir("/newroot/" + d, 0o755) }
        _ = mount("proc", "/newroot/proc", "proc", 0, nil)
        _ = mount("sysfs", "/newroot/sys", "sysfs", 0, nil)
        _ = mount("devtmpfs", "/newroot/dev", "devtmpfs", 0, nil)
        mkdir("/newroot/dev/pts", 0o755); mkdir("/newroot/dev/shm", 0o1777)
        _ = mount("devpts", "/newroot/dev/pts", "devpts", 0, "newinstance,ptmxmode=0666")
        _ = mount("tmpfs", "/newroot/dev/shm", "tmpfs", 0, "mode=1777")
        let ctlPort = findPort("cb.ctl")
        trace("root mounted, control port \(ctlPort ?? "none")")
        let rc = cb_app_switch_root("/newroot")
        guard rc == 0 else { fail("switch root: \(String(cString: strerror(rc)))") }

        _ = sethostname(launch.hostname, launch.hostname.utf8.count)
        try? Files.writeAtomically("/etc/hostname", launch.hostname + "\n")
        if !Files.exists("/etc/resolv.conf") || (Files.readTrimmed("/etc/resolv.conf") ?? "").isEmpty {
            try? Files.writeAtomically("/etc/resolv.conf", "nameserver \(dns)\n")
        }
        if !Files.exists("/etc/hosts") {
            try? Files.writeAtomically("/etc/hosts", "127.0.0.1 localhost\n10.0.2.15 \(launch.hostname)\n")
        }
        _ = cb_app_ipv4("lo", 0x7f00_0001, 0xff00_0000, 0)
        let net = cb_app_ipv4("eth0", ipAddress, 0xffff_ff00, gateway)
        if net != 0 { say("[cloudbios] app-init: eth0: \(String(cString: strerror(net)))\n") }

        trace("network \(net)")
        let (uid, gid) = resolveUser(launch.user)
        let children = Children()
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        let main = children.spawn(launch.argv, env: launch.env, cwd: launch.cwd, uid: uid, gid: gid,
                                  in: devnull, out: log, err: log, watched: false)
        guard main > 0 else { fail("start \(launch.argv[0]): \(String(cString: strerror(-main)))") }
        let control = Control(children: children, launch: launch, uid: uid, gid: gid, main: main)
        if let ctlPort { control.serve(ctlPort) }

        // Reap everything; the app's end is the VM's.
        while true {
            var st: Int32 = 0
            let pid = waitpid(-1, &st, 0)
            if pid < 0 {
                if errno == EINTR { continue }
                usleep(100_000)
                continue
            }
            if pid == main {
                let code = Launcher.exitCode(st)
                kill(-1, SIGKILL)
                say(exitMarker + "\(code)\n")
                fsync(log)
                _ = cb_app_reboot()
                while true { pause() }
            }
            children.exited(pid, status: st)
        }
    }

    /// A step of the boot, on the kernel's console when `cbapp=trace`.
    static func trace(_ s: String) {
        guard let v = getenv("cbapp"), String(cString: v) == "trace" else { return }
        let fd = open("/dev/console", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = "[cloudbios] app-init: \(s)\n".withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    /// `/dev/vportNpM` of the virtio-serial port named `name`.
    static func findPort(_ name: String) -> String? {
        let deadline = Clock.monotonic() + 5
        repeat {
            for p in Files.list("/sys/class/virtio-ports") where Files.readTrimmed("/sys/class/virtio-ports/\(p)/name") == name {
                if Files.exists("/dev/" + p) { return "/dev/" + p }
            }
            usleep(5_000)
        } while Clock.monotonic() < deadline
        return nil
    }

    /// `uid[:gid]` or `name[:group]` through the image's /etc/passwd and
    /// /etc/group; root when empty or unknown.
    static func resolveUser(_ user: String) -> (UInt32, UInt32) {
        guard !user.isEmpty else { return (0, 0) }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        func table(_ path: String) -> [[String]] {
            (Files.readTrimmed(path) ?? "").split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
        }
        var uid: UInt32 = 0, gid: UInt32 = 0
        if let n = UInt32(parts[0]) {
            uid = n
            if let row = table("/etc/passwd").first(where: { $0.count > 3 && $0[2] == parts[0] }), let g = UInt32(row[3]) { gid = g }
        } else if let row = table("/etc/passwd").first(where: { $0.count > 3 && $0[0] == parts[0] }) {
            uid = UInt32(row[2]) ?? 0; gid = UInt32(row[3]) ?? 0
        }
        if parts.count > 1 {
            if let g = UInt32(parts[1]) { gid = g }
            else if let row = table("/etc/group").first(where: { $0.count > 2 && $0[0] == parts[1] }) { gid = UInt32(row[2]) ?? gid }
        }
        return (uid, gid)
    }
}

/// The children the control port started, and their statuses once PID 1's
/// reaping loop has seen them end.
final class Children: @unchecked Sendable {
    let lock = ConditionLock()
    var watched: Set<pid_t> = []
    var statuses: [pid_t: Int32] = [:]

    /// Starts a program; a watched one's status is kept for `wait`.
    func spawn(_ argv: [String], env: [String], cwd: String, uid: UInt32, gid: UInt32,
               in: Int32, out: Int32, err: Int32, watched watch: Bool) -> pid_t {
        let cargv = argv.map { strdup($0) } + [nil]
        let cenv = env.map { strdup($0) } + [nil]
        defer { cargv.forEach { free($0) }; cenv.forEach { free($0) } }
        return lock.withLock {
            let pid = cb_app_spawn(cargv, cenv, cwd, uid, gid, `in`, out, err)
            if pid > 0 && watch { watched.insert(pid) }
            return pid
        }
    }

    func exited(_ pid: pid_t, status: Int32) {
        lock.withLock {
            guard watched.remove(pid) != nil else { return }
            statuses[pid] = status
            lock.broadcast()
        }
    }

    func wait(_ pid: pid_t) -> Int32 {
        lock.withLock {
            while statuses[pid] == nil { lock.wait(until: nil) }
            return statuses.removeValue(forKey: pid)!
        }
    }
}

/// Requests from the host on the `cb.ctl` port, one JSON line each,
/// answered with one JSON line: `{"op":"exec","cmd":[…]}` →
/// `{"exit_code","stdout","stderr"}`; `{"op":"stop","timeout":S}` sends the
/// app SIGTERM (SIGKILL after S seconds) → `{"ok":true}`; `{"op":"ping"}`.
final class Control: @unchecked Sendable {
    static let outputLimit = 1 << 20
    let children: Children
    let launch: AppLaunch
    let uid: UInt32, gid: UInt32
    let main: pid_t

    init(children: Children, launch: AppLaunch, uid: UInt32, gid: UInt32, main: pid_t) {
        self.children = children; self.launch = launch; self.uid = uid; self.gid = gid; self.main = main
    }

    func serve(_ port: String) {
        let box = Unmanaged.passRetained(ControlThreadArgument(control: self, port: port))
        var thread = pthread_t()
        pthread_create(&thread, nil, { arg in
            let a = Unmanaged<ControlThreadArgument>.fromOpaque(arg!).takeRetainedValue()
            a.control.loop(a.port)
            return nil
        }, box.toOpaque())
    }

    func loop(_ port: String) {
        let fd = open(port, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return }
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 {
                // the host is not connected: nothing to read until it is
                pending.removeAll()
                usleep(20_000)
                continue
            }
            pending += buf[0..<n]
            while let nl = pending.firstIndex(of: 10) {
                let line = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                let answer = handle(line)
                let bytes = Array((answer.serialized() + "\n").utf8)
                try? Files.writeAll(fd, bytes, what: "control answer")
            }
        }
    }

    func handle(_ line: [UInt8]) -> JSONValue {
        guard let req = try? JSONValue.parse(line), let op = req["op"]?.stringValue else {
            return .object(["error": .string("not a request")])
        }
        switch op {
        case "ping":
            return .object(["ok": .bool(true)])
        case "stop":
            let timeout = req["timeout"]?.doubleValue ?? 10
            kill(-main, SIGTERM); kill(main, SIGTERM)
            let m = main
            DispatchLike.after(timeout) { kill(-m, SIGKILL); kill(m, SIGKILL) }
            return .object(["ok": .bool(true)])
        case "exec":
            let cmd = req["cmd"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard !cmd.isEmpty, !cmd[0].isEmpty else { return .object(["error": .string("cmd is empty")]) }
            return exec(cmd)
        default:
            return .object(["error": .string("unknown op")])
        }
    }

    func exec(_ cmd: [String]) -> JSONValue {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0 else { return .object(["error": .string("pipe: \(AppInit.errnoText())")]) }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            return .object(["error": .string("pipe: \(AppInit.errnoText())")])
        }
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let pid = children.spawn(cmd, env: launch.env, cwd: launch.cwd, uid: uid, gid: gid,
                                 in: devnull, out: outPipe[1], err: errPipe[1], watched: true)
        close(devnull); close(outPipe[1]); close(errPipe[1])
        var out: [UInt8] = [], err: [UInt8] = []
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0), pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 65536)
        while fds.contains(where: { $0.fd >= 0 }) {
            if poll(&fds, nfds_t(fds.count), -1) < 0 { if errno == EINTR { continue }; break }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = read(fds[i].fd, &buf, buf.count)
                if n <= 0 { close(fds[i].fd); fds[i].fd = -1; continue }
                if i == 0 { if out.count < Self.outputLimit { out += buf[0..<n] } } else if err.count < Self.outputLimit { err += buf[0..<n] }
            }
        }
        guard pid > 0 else { return .object(["error": .string("start \(cmd[0]): \(String(cString: strerror(-pid)))")]) }
        let status = children.wait(pid)
        return .object([
            "exit_code": .int(Int(Launcher.exitCode(status))),
            "stdout": .string(String(decoding: out, as: UTF8.self)),
            "stderr": .string(String(decoding: err, as: UTF8.self)),
        ])
    }
}

final class ControlThreadArgument {
    let control: Control
    let port: String
    init(control: Control, port: String) { self.control = control; self.port = port }
}

/// Runs a closure once after a delay on a thread of its own.
enum DispatchLike {
    static func after(_ seconds: Double, _ body: @escaping @Sendable () -> Void) {
        final class Box { let body: @Sendable () -> Void; let seconds: Double; init(_ b: @escaping @Sendable () -> Void, _ s: Double) { body = b; seconds = s } }
        let box = Unmanaged.passRetained(Box(body, seconds))
        var thread = pthread_t()
        pthread_create(&thread, nil, { arg in
            let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            usleep(UInt32(max(0, min(3600, b.seconds)) * 1_000_000))
            b.body()
            return nil
        }, box.toOpaque())
        pthread_detach(thread)
    }
}
