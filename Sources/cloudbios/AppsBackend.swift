import Apps
import Config
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
    static func appOptions(_ dir: String, panelPort: Int, manager: VMManager, hostname: String?) -> AppManager.Options {
        var o = AppManager.Options(stateDir: dir)
        o.portOwner = { port in
            if port == panelPort { return "the panel" }
            for vm in await manager.list() where vm.spec.forwards.contains(where: { $0.host == port && $0.proto == .tcp }) {
                return "VM '\(vm.spec.name)'"
            }
            return nil
        }
        o.accel = { await manager.host(hostname: hostname).accel == "kvm" ? "kvm" : "tcg" }
        return o
    }
}
