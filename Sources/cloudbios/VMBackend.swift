import Config
import Panel
import VMManager

/// The panel's backend: VM calls go to the VM manager; disks and installs
/// go to their own modules once wired.
struct VMManagerBackend: PanelBackend {
    let manager: VMManager
    let hostname: String?

    func host() async -> HostInfo { await manager.host(hostname: hostname) }
    func listVMs() async -> [VMStatus] { await manager.list() }
    func vm(_ name: String) async throws -> VMStatus { try await manager.vm(name) }
    func createVM(_ spec: VMSpec) async throws -> VMStatus { try await manager.create(spec) }
    func updateVM(_ name: String, _ spec: VMSpec) async throws -> VMStatus { try await manager.update(name, spec) }
    func deleteVM(_ name: String) async throws { try await manager.delete(name) }
    func perform(_ action: VMAction, on name: String) async throws -> VMStatus { try await manager.perform(action, on: name) }
    func serialLogPath(_ name: String) async throws -> String { try await manager.serialLogPath(name) }
    func screenshot(_ name: String) async throws -> [UInt8] { try await manager.screenshot(name) }
    func vncSocketPath(_ name: String) async throws -> String { try await manager.vncSocketPath(name) }

    func listImages() async -> [ImageInfo] { await manager.images() }
    func beginImageUpload(_ name: String, expectedSize: Int64?) async throws -> any ImageUpload {
        try await manager.beginImageUpload(name, expectedSize: expectedSize)
    }
    func deleteImage(_ name: String) async throws { try await manager.deleteImage(name) }

    func disks() async throws -> JSONValue { throw APIError(501, "disk listing is not available in this build") }
    func startInstall(_ body: JSONValue) async throws -> TaskInfo { throw APIError(501, "install is not available in this build") }
    func task(_ id: String) async throws -> TaskInfo { throw APIError.notFound("no task '\(Names.clip(id))'") }
    func tasks() async -> [TaskInfo] { [] }

    func metrics() async -> String { await manager.metrics() }
}

extension ImageUploadSession: ImageUpload {}
