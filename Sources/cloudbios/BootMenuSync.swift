import Config
import Init
import Install
import Platform
import VMManager

/// Keeps GRUB's per-VM entries in step with the daemon's VMs, on a machine
/// CloudBIOS runs (its PID 1): at start and after every change of the VMs
/// through the API (created, deleted, edited: a rename or `display`).
struct BootMenuSync: Sendable {
    let menu: BootMenu
    let manager: VMManager

    /// The boot menu of this machine, when there is one to keep: the daemon
    /// runs under CloudBIOS's PID 1 and its config came from a CBCONFIG
    /// volume or an installed config partition.
    static func forThisMachine(config: String?, manager: VMManager) -> BootMenuSync? {
        let pid1 = Files.readLink("/proc/1/exe")
        guard pid1 != nil, pid1 == Files.readLink("/proc/self/exe") else { return nil }
        guard let target = BootMenu.target(configPath: config) else {
            Log.info("boot menu: the config is on no CBCONFIG volume or installed system; GRUB's VM entries are not kept")
            return nil
        }
        return BootMenuSync(menu: BootMenu(target), manager: manager)
    }

    func refresh() async {
        let specs = await manager.list().map(\.spec)
        let names = specs.map(\.name)
        let display = specs.first { $0.display }?.name
        do {
            if try menu.sync(vms: names, display: display) {
                Log.info("boot menu: \(menu.path): entries for \(names.isEmpty ? "no VM" : names.joined(separator: ", "))")
            }
        } catch {
            Log.warning("boot menu: \(menu.path) not written: \(error)")
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
