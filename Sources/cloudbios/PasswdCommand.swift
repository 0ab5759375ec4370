import ArgumentParser
import Panel
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios passwd`: prints a crypt(3) hash for `panel.users[].password_hash`.
struct PasswdCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "passwd",
        abstract: "Print a crypt(3) password hash for panel.users in cloudbios.yaml.",
        discussion: "Reads the password from the terminal without echo (twice), or one line from standard input when it is not a terminal."
    )

    enum Method: String, ExpressibleByArgument, CaseIterable {
        case sha512, yescrypt
        var prefix: String { self == .sha512 ? "$6$" : "$y$" }
    }

    @Option(help: "Hash method: sha512 (sha512-crypt, $6$) or yescrypt ($y$).")
    var method: Method = .sha512

    mutating func execute() async throws {
        let password: String
        if isatty(0) == 1 {
            guard let first = Self.readHidden("Password: ") else { throw CLIError("no password read") }
            guard let second = Self.readHidden("Again: ") else { throw CLIError("no password read") }
            guard first == second else { throw CLIError("the passwords differ") }
            password = first
        } else {
            guard let line = readLine(strippingNewline: true) else { throw CLIError("no password on standard input") }
            password = line
        }
        guard !password.isEmpty else { throw CLIError("the password is empty") }
        print(try PasswordHash.make(password, prefix: method.prefix))
    }

    /// Prompts on the terminal with echo off; restores it even on error.
    static func readHidden(_ prompt: String) -> String? {
        let tty = open("/dev/tty", O_RDWR | O_CLOEXEC)
        let fd = tty >= 0 ? tty : 0
        defer { if tty >= 0 { close(tty) } }
        _ = prompt.withCString { write(fd == 0 ? 2 : fd, $0, strlen($0)) }
        var old = termios()
        let haveTermios = tcgetattr(fd, &old) == 0
        if haveTermios {
            var t = old
            t.c_lflag &= ~tcflag_t(ECHO)
            t.c_lflag |= tcflag_t(ECHONL)
            tcsetattr(fd, TCSAFLUSH, &t)
        }
        defer { if haveTermios { tcsetattr(fd, TCSAFLUSH, &old) } }
        var bytes: [UInt8] = []
        var c: UInt8 = 0
        while true {
            let n = read(fd, &c, 1)
            if n <= 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if c == 0x0a { break }
            if c != 0x0d { bytes.append(c) }
            if bytes.count > 4096 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
