import Apps
import Config
import Install
import Platform
import Panel
import VMManager

/// The panel's apps routes go to the app manager; the host ports apps may
/// forward are checked against the panel's and the VMs' forwards.
extension VMManagerBackend {
    func listApps() async -> [JSONValue] { await apps.list().map(\.json) }
    func app(_ name: String) async throws -> JSONValue { try await apps.app(name).json }
    func createApp(_ body: JSONValue) async throws -> JSONValue { try await apps.create(try AppSpec.parse(body)).json }
    func deleteApp(_ name: String) async throws { try await apps.delete(name) }
    func stopApp(_ name: String) async throws -> JSONValue { try await apps.stop(name).json }
    func appLogPath(_ name: String) async throws -> String { try await apps.logPath(name) }
    func execApp(_ name: String, _ cmd: [String]) async throws -> JSONValue {
        let r = try await apps.exec(name, cmd)
        return .object(["exit_code": .int(r.exitCode), "stdout": .string(r.stdout), "stderr": .string(r.stderr)])
    }
}

extension DaemonCommand {
    /// The app manager's options: the state dir, the panel's port and the
    /// VMs' forwards as taken ports, the accelerator the host's probe found.
    static func appOptions(_ dir: String, panelPort: Int, manager: VMManager, hostname: String?, config: String? = nil) -> AppManager.Options {
        var o = AppManager.Options(stateDir: dir)
        o.portOwner = { port in
            if port == panelPort { return "the panel" }
            for vm in await manager.list() where vm.spec.forwards.contains(where: { $0.host == port && $0.proto == .tcp }) {
                return "VM '\(vm.spec.name)'"
            }
            return nil
        }
        o.accel = { await manager.host(hostname: hostname).accel == "kvm" ? "kvm" : "tcg" }
        o.kernelImage = { version in AppsKernel.fromBootMedium(version, config: config) }
        return o
    }
}

/// The kernel apps boot on the PE: the running slot's on an installed
/// system, else the boot medium's (the payload carries no second copy),
/// copied to RAM on first use so apps keep starting once the medium is
/// removed.
enum AppsKernel {
    static let directory = "/run/cloudbios/apps-kernel"

    static func fromBootMedium(_ version: String, config: String?) -> String? {
        let copy = directory + "/vmlinuz-" + version
        if Files.exists(copy) { return copy }
        if case .installed(let root, _)? = BootMenu.target(configPath: config) {
            let slot = SystemSlot.running(cmdline: (try? Files.readString("/proc/cmdline")) ?? "")
            let k = root + "/" + slot.directory + "vmlinuz"
            if Files.exists(k) { return k }
        }
        guard let medium = try? InstallSources.locate().kernel else { return nil }
        do {
            try Files.makeDirectories(directory)
            let bytes = try Files.read(medium)
            try Files.writeAtomically(copy, bytes, mode: 0o644)
            Log.info("apps: kernel \(version) copied from \(medium) to RAM (\(bytes.count / 1024) KiB)")
            return copy
        } catch {
            Log.error("apps: cannot copy the kernel from \(medium): \(error)")
            return nil
        }
    }
}
