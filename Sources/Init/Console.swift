#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization

/// PID 1's log: every line goes to the serial console(s), to the screen
/// (until the status screen takes it over), and to /run/cloudbios/pe.log.
public final class InitConsole {
    var serial: [Int32] = []
    var screen: Int32 = -1
    var file: Int32 = -1
    /// While true, log lines also go to the screen (set by the main loop,
    /// read by whichever thread logs).
    public var screenLogging: Bool {
        get { screenFlag.load(ordering: .relaxed) }
        set { screenFlag.store(newValue, ordering: .relaxed) }
    }
    private let screenFlag = Atomic<Bool>(true)
    let start: Double
    let sinkToStderr: Bool

    public init(offTarget: Bool) {
        start = Clock.boottime()
        sinkToStderr = offTarget
    }

    /// Opens the consoles the kernel is using (`/sys/class/tty/console/active`):
    /// serial ports for the log, the first VT for the screen.
    public func open(root: String = "") {
        let active = Files.readTrimmed(root + "/sys/class/tty/console/active")?.split(separator: " ").map(String.init) ?? []
        for name in active where !name.hasPrefix("tty") || name.hasPrefix("ttyS") || name.hasPrefix("ttyAMA") || name.hasPrefix("hvc") {
            let fd = Self.openTTY("/dev/" + name)
            if fd >= 0 { serial.append(fd) }
        }
        screen = Self.openTTY("/dev/tty1")
        if serial.isEmpty && screen < 0 {
            let fd = Self.openTTY("/dev/console")
            if fd >= 0 { serial.append(fd) }
        }
        try? Files.makeDirectories("/run/cloudbios")
        file = Glibc.open("/run/cloudbios/pe.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    }

    static func openTTY(_ path: String) -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        if fd >= 0 {
            let fl = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)
        }
        return fd
    }

    /// One log line, stamped with the seconds since boot.
    public func log(_ message: String) {
        write("[\(Self.stamp())] cloudbios: \(message)\n", screen: screenLogging)
    }

    /// Output of a service, already prefixed with its name, stamped like
    /// PID 1's own lines: serial and file only (and the screen while booting).
    public func forward(_ line: String) {
        write("[\(Self.stamp())] \(line)\n", screen: screenLogging)
    }

    /// Seconds since boot with milliseconds, as the kernel's log has them.
    static func stamp() -> String {
        let ms = Int(Clock.boottime() * 1000)
        return String(ms / 1000) + "." + String(ms % 1000 + 1000).dropFirst()
    }

    func write(_ text: String, screen toScreen: Bool) {
        let bytes = Array(text.utf8)
        if sinkToStderr { _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }; return }
        // the terminals translate \n to \r\n themselves (ONLCR)
        for fd in serial { try? Files.writeAll(fd, bytes) }
        if toScreen && screen >= 0 { try? Files.writeAll(screen, bytes) }
        if file >= 0 { try? Files.writeAll(file, bytes) }
    }

    /// Clears the screen and draws the status text.
    public func drawStatus(_ text: String) {
        guard screen >= 0 else { return }
        var out = "\u{1B}[H\u{1B}[2J\u{1B}[3J"
        out += text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
        try? Files.writeAll(screen, Array(out.utf8))
    }
}
