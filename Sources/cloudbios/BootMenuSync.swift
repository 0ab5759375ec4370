import Config
import Init
import Install
import Platform
import Synchronization
import VMManager

/// Keeps GRUB's per-VM entries in step with the daemon's VMs, on a machine
/// CloudBIOS runs (its PID 1): it follows the manager's VM set, so every
/// change of it — through the API, the config file, a task that makes a VM,
/// a live migration in or out — is written. Writes run on a thread of their
/// own, one at a time; changes arriving meanwhile are folded into the next.
final class BootMenuSync: Sendable {
    let menu: BootMenu

    private struct State {
        /// The latest VM set, and how many changes were told so far.
        var wanted: VMSet?
        var told = 0
        /// How many changes the file holds (the latest written counted).
        var written = 0
        var writing = false
        var waiters: [(upTo: Int, resume: CheckedContinuation<Void, Never>)] = []
    }
    private let state = Mutex(State())

    private init(menu: BootMenu) { self.menu = menu }

    /// The boot menu of this machine, when there is one to keep, following
    /// `manager`'s VMs from now on: `file` when given (a `boot-menu.cfg`
    /// anywhere), else when the daemon runs under CloudBIOS's PID 1 and its
    /// config came from a CBCONFIG volume or an installed config partition.
    static func start(config: String?, file: String?, manager: VMManager) async -> BootMenuSync? {
        let target: BootMenu.Target
        if let file {
            target = .stick(file: file)
        } else {
            let pid1 = Files.readLink("/proc/1/exe")
            guard pid1 != nil, pid1 == Files.readLink("/proc/self/exe") else { return nil }
            guard let t = BootMenu.target(configPath: config) else {
                Log.info("boot menu: the config is on no CBCONFIG volume or installed system; GRUB's VM entries are not kept")
                return nil
            }
            target = t
        }
        let sync = BootMenuSync(menu: BootMenu(target))
        await manager.followVMSet { [sync] set in sync.told(set) }
        await sync.settled()
        return sync
    }

    /// A change of the VM set: written soon, on the writer's thread.
    private func told(_ set: VMSet) {
        let start = state.withLock { s -> Bool in
            s.wanted = set
            s.told += 1
            if s.writing { return false }
            s.writing = true
            return true
        }
        if start { spawnThread { [self] in drain() } }
    }

    /// Writes the latest VM set until no change is left unwritten.
    private func drain() {
        while true {
            let next = state.withLock { s -> (VMSet, Int)? in
                guard s.written < s.told, let set = s.wanted else {
                    s.writing = false
                    return nil
                }
                return (set, s.told)
            }
            guard let (set, upTo) = next else { return }
            write(set)
            let done = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.written = upTo
                let ready = s.waiters.filter { $0.upTo <= upTo }.map(\.resume)
                s.waiters.removeAll { $0.upTo <= upTo }
                return ready
            }
            for c in done { c.resume() }
        }
    }

    private func write(_ set: VMSet) {
        do {
            if try menu.sync(vms: set.names, display: set.display) {
                Log.info("boot menu: \(menu.path): entries for \(set.names.isEmpty ? "no VM" : set.names.joined(separator: ", "))")
            }
        } catch {
            Log.warning("boot menu: \(menu.path) not written: \(error)")
        }
    }

    /// Returns once the file holds every change told so far (an API call
    /// that changed the VMs answers after GRUB's entries followed).
    func settled() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.written >= s.told { return true }
                s.waiters.append((s.told, c))
                return false
            }
            if now { c.resume() }
        }
    }
}

extension BootMenuSync {
    /// The VM the boot menu's entry picked (`cloudbios.display=NAME` on the
    /// kernel command line of a machine CloudBIOS runs) starts with the
    /// host, autostart or not: the entry boots the two together.
    static func startChosenVM(_ manager: VMManager) async {
        let pid1 = Files.readLink("/proc/1/exe")
        guard pid1 != nil, pid1 == Files.readLink("/proc/self/exe"),
              let name = KernelCommandLine((try? Files.readString("/proc/cmdline")) ?? "").display,
              name != "none", Names.checkVM(name) == nil,
              let vm = try? await manager.vm(name), vm.state == .stopped else { return }
        do {
            _ = try await manager.start(name)
            Log.info("boot menu: \(name), picked in the boot menu, started with the host")
        } catch {
            Log.warning("boot menu: \(name), picked in the boot menu, does not start: \(error)")
        }
    }
}
