import ArgumentParser
import Config
import Init
import Panel
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios host-console`: the menu on the machine's own screen (PID 1
/// runs it on tty1; Ctrl+Alt+F12 reaches it from a guest on the display):
/// the status screen plus a keyboard menu to set the admin password, set the
/// network, show the setup code, open a root shell behind the admin
/// password, reboot and shut down.
struct HostConsoleCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "host-console",
        abstract: "Run the host console's menu on a terminal (the PE runs it on tty1).")

    @Option(help: "The terminal.")
    var tty: String = "/dev/tty1"

    @Option(name: .customLong("users-file"), help: "The machine's own panel users (users.yaml), as the daemon uses it.")
    var usersFile: String

    @Option(name: .customLong("setup-code-file"), help: "The first-run setup code, as the daemon writes it.")
    var setupCodeFile: String = "/run/cloudbios/setup-code"

    @Option(help: "The config file, for its panel users.")
    var config: String?

    @Option(help: "The status text PID 1 keeps up to date.")
    var status: String = PE.statusFile

    mutating func execute() async throws {
        Log.component = "cloudbios-host-console"
        let fd = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw CLIError("\(tty): \(SystemError("open", errno: currentErrno()))") }
        var configUsers: [PanelUser] = []
        if let config, let text = try? Files.readString(config), let cfg = try? ConfigLoader.load(path: config, text: text) {
            configUsers = cfg.panel.users
        }
        let store = UserStore(path: usersFile)
        let console = HostConsole(fd: fd, users: UserDirectory(config: configUsers, store: store),
                                  store: store, codeFile: setupCodeFile, statusFile: status)
        console.run()
    }
}

final class HostConsole {
    let fd: Int32
    let users: UserDirectory
    let store: UserStore
    let codeFile: String
    let statusFile: String
    var menu = HostMenu()
    var lastScreen = ""

    init(fd: Int32, users: UserDirectory, store: UserStore, codeFile: String, statusFile: String) {
        self.fd = fd; self.users = users; self.store = store; self.codeFile = codeFile; self.statusFile = statusFile
        menu.defaultInterface = Files.list("/sys/class/net").sorted().first { $0 != "lo" && Files.exists("/sys/class/net/\($0)/device") } ?? "eth0"
    }

    func run() -> Never {
        rawMode()
        while true {
            draw()
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 2000)
            if n < 0 && currentErrno() != EINTR { sleep(1); continue }
            guard n > 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 64)
            let r = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if r <= 0 { usleep(200_000); continue }
            var i = 0
            while i < r {
                // arrow and function keys (ESC [ …) are not ours: skip them whole
                if buf[i] == 0x1B && i + 1 < r && buf[i + 1] == UInt8(ascii: "[") {
                    i += 2
                    while i < r && !(0x40...0x7E).contains(buf[i]) { i += 1 }
                    i += 1
                    continue
                }
                if let action = menu.feed(buf[i]) { perform(action) }
                i += 1
            }
        }
    }

    func perform(_ action: HostMenu.Action) {
        switch action {
        case .setPassword(let user, let password):
            if let e = Names.checkUser(user) { menu.show(e + "; nothing was changed."); return }
            if users.configUsers.contains(where: { $0.name == user }) {
                menu.show("'\(user)' is defined in cloudbios.yaml (panel.users), which wins: change it there; nothing was changed.")
                return
            }
            do {
                let keys = store.load().first { $0.name == user }?.sshAuthorizedKeys ?? []
                try store.upsert(PanelUser(name: user, passwordHash: try PasswordHash.make(password), sshAuthorizedKeys: keys))
                users.invalidate()
                if Files.exists(codeFile) { Files.remove(codeFile) }
                Log.info("host console: password of '\(user)' set")
                menu.show("The password of '\(user)' is set; the panel accepts it now" + (store.persistent ? "." : " (kept in RAM until the next boot)."))
            } catch {
                menu.show("Cannot keep the password: \(error)")
            }
        case .network(let iface, let address, let gateway, let dns):
            guard Names.checkInterface(iface) == nil, Files.exists("/sys/class/net/" + iface) else {
                menu.show("There is no network interface '\(Names.clip(iface))' (\(Files.list("/sys/class/net").filter { $0 != "lo" }.sorted().joined(separator: ", "))).")
                return
            }
            let line = ([iface, address] + (gateway.map { [$0] } ?? (dns.isEmpty ? [] : ["-"])) + dns).joined(separator: " ")
            do {
                try Files.writeAtomically(PE.networkRequestFile, line + "\n", mode: 0o600)
                kill(1, SIGHUP)
                Log.info("host console: network \(line)")
                menu.show(address == "dhcp" ? "\(iface): DHCP again; the address appears above once leased."
                                            : "\(iface): \(address) is applied; the panel answers on it now.")
            } catch {
                menu.show("Cannot ask for the change: \(error)")
            }
        case .showSetupCode:
            if let code = Files.readTrimmed(codeFile) {
                menu.show("Setup code: \(code) -- open the panel's address in a browser and enter it to create the first admin.")
            } else {
                menu.show(users.isEmpty ? "No setup code yet: the panel is still starting." : "No setup is pending: the admin exists. Use 1 to reset its password.")
            }
        case .shell(let user, let password):
            guard let hash = users.passwordHash(user), PasswordHash.verify(password, hash: hash) else {
                Log.warning("host console: refused a root shell for '\(Names.clip(user))'")
                sleep(2)
                menu.show(users.isEmpty ? "No admin exists yet: create one first (1)." : "Wrong user or password.")
                return
            }
            Log.info("host console: root shell for '\(user)'")
            shell()
        case .reboot:
            Log.info("host console: reboot")
            menu.show("Rebooting: guests are shut down first.")
            draw()
            kill(1, SIGTERM)
        case .powerOff:
            Log.info("host console: shut down")
            menu.show("Shutting down: guests are shut down first.")
            draw()
            kill(1, SIGUSR2)
        }
    }

    /// A root shell on the terminal until it exits.
    func shell() {
        restoreMode()
        write("\u{1B}[H\u{1B}[2J\u{1B}[3JRoot shell on the CloudBIOS host. 'exit' returns to the menu.\r\n")
        let name = String(ttyName().split(separator: "/").last ?? "tty1")
        if let pid = try? Launcher("/sbin/getty", ["-n", "-l", "/bin/sh", "0", name],
                                   environment: Launcher.defaultEnvironment + ["HOME=/root", "TERM=linux", "PS1=cloudbios# "]).spawn() {
            _ = Launcher.wait(pid)
        }
        rawMode()
        lastScreen = ""
    }

    func ttyName() -> String {
        Files.readLink("/proc/self/fd/\(fd)") ?? "/dev/tty1"
    }

    func draw() {
        let status = (try? Files.readString(statusFile)) ?? "CloudBIOS: starting…\n"
        var ws = winsize()
        let size = ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col >= 40 && ws.ws_row >= 12 ? (Int(ws.ws_col), Int(ws.ws_row)) : (80, 25)
        let screen = menu.render(status: status, width: size.0, height: size.1 - 1)
        guard screen != lastScreen else { return }
        lastScreen = screen
        write("\u{1B}[H\u{1B}[2J\u{1B}[3J" + screen.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n"))
    }

    func write(_ s: String) { try? Files.writeAll(fd, Array(s.utf8)) }

    var saved: termios?
    func rawMode() {
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { return }
        if saved == nil { saved = t }
        t.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG)
        t.c_iflag &= ~tcflag_t(ICRNL | IXON)
        t.c_cc.6 = 1  // VMIN
        t.c_cc.5 = 0  // VTIME
        tcsetattr(fd, TCSANOW, &t)
    }

    func restoreMode() {
        guard var t = saved else { return }
        tcsetattr(fd, TCSANOW, &t)
    }
}
