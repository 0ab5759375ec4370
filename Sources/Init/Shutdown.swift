#if canImport(Glibc)
import Glibc
#endif
import Platform

/// What the machine does at the end of a shutdown.
public enum ShutdownKind: String, Sendable {
    case reboot, poweroff, halt

    /// busybox init's convention: SIGTERM and SIGINT (ctrl-alt-del) reboot,
    /// SIGUSR1 halts, SIGUSR2 and SIGPWR power off.
    public init?(signal: Int32) {
        switch signal {
        case SIGTERM, SIGINT: self = .reboot
        case SIGUSR1: self = .halt
        case SIGUSR2, SIGPWR: self = .poweroff
        default: return nil
        }
    }
}

/// A running VM as its run directory describes it.
public struct VMRun: Equatable, Sendable {
    public var name: String
    public var qmpSocket: String
    public var pid: pid_t?
    public init(name: String, qmpSocket: String, pid: pid_t?) { self.name = name; self.qmpSocket = qmpSocket; self.pid = pid }

    /// VMs under `<stateDir>/run/<name>/` with a `qmp.sock` (pid from `qemu.pid`).
    public static func scan(stateDir: String) -> [VMRun] {
        let run = stateDir + "/run"
        return Files.list(run).compactMap { name in
            let dir = run + "/" + name
            guard Files.exists(dir + "/qmp.sock") else { return nil }
            let pid = Files.readTrimmed(dir + "/qemu.pid").flatMap { pid_t($0) }
            return VMRun(name: name, qmpSocket: dir + "/qmp.sock", pid: pid)
        }
    }
}

/// What a shutdown acts on; the PE implements it with syscalls, tests with a
/// recorder.
public protocol ShutdownMachine: AnyObject {
    func log(_ line: String)
    func now() -> Double
    func sleep(_ seconds: Double)
    /// Stops a supervised service (SIGTERM, then SIGKILL after `timeout`).
    func stopService(_ name: String, timeout: Double)
    func runningVMs() -> [VMRun]
    /// Sends one QMP command; true when QEMU answered with `return`.
    func qmp(_ vm: VMRun, _ command: String) -> Bool
    func alive(_ vm: VMRun) -> Bool
    func kill(_ vm: VMRun)
    func syncDisks()
    func unmountAll()
    func reboot(_ kind: ShutdownKind)
}

public enum ShutdownSequence {
    /// The order of a clean shutdown, as data.
    public static let steps = ["stop viewer", "powerdown VMs", "wait for VMs", "quit VMs", "stop daemon",
                               "stop services", "sync", "unmount", "reboot"]

    /// Runs the shutdown: the viewer first, then every VM gets an ACPI power
    /// button press and `vmTimeout` seconds to stop before `quit` (and
    /// SIGKILL), then the daemon and the rest, sync, unmount, reboot(2).
    public static func run(_ kind: ShutdownKind, on m: ShutdownMachine, vmTimeout: Double = 30,
                           otherServices: [String] = []) {
        m.log("shutdown (\(kind.rawValue)): stopping the viewer")
        m.stopService("viewer", timeout: 3)
        let vms = m.runningVMs().filter { m.alive($0) }
        if !vms.isEmpty {
            m.log("shutdown: asking \(vms.count) VM(s) to power down: \(vms.map(\.name).joined(separator: ", "))")
            for vm in vms where !m.qmp(vm, "system_powerdown") {
                m.log("shutdown: \(vm.name): QMP system_powerdown failed")
            }
            let deadline = m.now() + vmTimeout
            while m.now() < deadline, vms.contains(where: { m.alive($0) }) { m.sleep(0.25) }
            for vm in vms where m.alive(vm) {
                m.log("shutdown: \(vm.name) still running after \(Int(vmTimeout)) s: quit")
                _ = m.qmp(vm, "quit")
                let d2 = m.now() + 3
                while m.now() < d2, m.alive(vm) { m.sleep(0.1) }
                if m.alive(vm) { m.log("shutdown: \(vm.name): killing QEMU"); m.kill(vm) }
            }
            m.log("shutdown: VMs stopped")
        }
        m.log("shutdown: stopping the daemon")
        m.stopService("daemon", timeout: 10)
        for s in otherServices { m.stopService(s, timeout: 2) }
        m.log("shutdown: sync")
        m.syncDisks()
        m.log("shutdown: unmounting filesystems")
        m.unmountAll()
        m.log("shutdown: \(kind.rawValue) now")
        m.reboot(kind)
    }
}
