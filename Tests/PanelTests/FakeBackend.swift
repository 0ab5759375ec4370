#if canImport(Glibc)
import Glibc
#endif
import Config
@testable import Panel

/// An in-memory backend: enough state to exercise every route.
actor FakeBackend: PanelBackend {
    var vms: [String: VMStatus] = [:]
    var images: [String: ImageInfo] = [:]
    var uploads: [FakeUpload] = []
    let dir: String
    var vncPath: String?
    var hanging = 0

    init(dir: String) {
        self.dir = dir
    }

    func setVNCPath(_ p: String?) { vncPath = p }
    func lastUpload() -> FakeUpload? { uploads.last }
    func vmNames() -> [String] { vms.keys.sorted() }
    func addVM(_ name: String, memory: Int = 256) {
        var s = VMSpec(name: name); s.memory = memory
        vms[name] = VMStatus(spec: s, state: .stopped)
    }

    func host() async -> HostInfo {
        HostInfo(hostname: "box1", version: "test", cpuModel: "Fake CPU", cpus: 2, memoryTotalMiB: 4096,
                 memoryAvailableMiB: 2048, accel: "tcg", accelReason: "no usable /dev/kvm", uptimeSeconds: 42)
    }
    func listVMs() async -> [VMStatus] { vms.values.sorted { $0.spec.name < $1.spec.name } }
    func vm(_ name: String) async throws -> VMStatus {
        guard let v = vms[name] else { throw RequestError.notFound("no VM named '\(name)'") }
        return v
    }
    func createVM(_ spec: VMSpec) async throws -> VMStatus {
        guard vms[spec.name] == nil else { throw RequestError.conflict("a VM named '\(spec.name)' exists") }
        let s = VMStatus(spec: spec, state: .stopped)
        vms[spec.name] = s
        return s
    }
    func updateVM(_ name: String, _ spec: VMSpec) async throws -> VMStatus {
        guard var v = vms[name] else { throw RequestError.notFound("no VM named '\(name)'") }
        v.spec = spec
        vms[name] = v
        return v
    }
    func importVM(image: String, name: String) async throws -> TaskInfo {
        TaskInfo(id: "import-2", kind: "import", state: .pending)
    }
    func importImage(_ name: String, url: String, sha256: String?) async throws -> TaskInfo {
        TaskInfo(id: "import-1", kind: "import", state: .pending)
    }
    func setCDROM(_ name: String, _ image: String?) async throws -> VMStatus {
        guard var v = vms[name] else { throw RequestError.notFound("no VM named '\(name)'") }
        v.spec.cdrom = image
        vms[name] = v
        return v
    }
    func deleteVM(_ name: String) async throws {
        guard vms.removeValue(forKey: name) != nil else { throw RequestError.notFound("no VM named '\(name)'") }
    }
    func perform(_ action: VMAction, on name: String) async throws -> VMStatus {
        guard var v = vms[name] else { throw RequestError.notFound("no VM named '\(name)'") }
        switch action {
        case .start, .resume, .reboot, .reset: v.state = .running
        case .stop, .shutdown: v.state = .stopped
        case .pause: v.state = .paused
        }
        vms[name] = v
        return v
    }
    func serialLogPath(_ name: String) async throws -> String {
        guard vms[name] != nil else { throw RequestError.notFound("no VM named '\(name)'") }
        return dir + "/\(name).serial.log"
    }
    func screenshot(_ name: String) async throws -> [UInt8] {
        if name == "hang" { hanging += 1; try await Task.sleep(nanoseconds: 20_000_000_000) }
        guard vms[name] != nil else { throw RequestError.notFound("no VM named '\(name)'") }
        return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
    }
    func vncSocketPath(_ name: String) async throws -> String {
        guard vms[name] != nil else { throw RequestError.notFound("no VM named '\(name)'") }
        guard let vncPath else { throw RequestError.conflict("VM '\(name)' is not running") }
        return vncPath
    }
    func serialSocketPath(_ name: String) async throws -> String { try await vncSocketPath(name) }
    func listImages() async -> [ImageInfo] { images.values.sorted { $0.name < $1.name } }
    func beginImageUpload(_ name: String, expectedSize: Int64?) async throws -> any ImageUpload {
        if name == "forbidden" { throw RequestError.conflict("image 'forbidden' is in use") }
        let u = FakeUpload(name: name, expectedSize: expectedSize, failAfter: name == "failing" ? 100_000 : nil) { [weak self] info in
            Task { await self?.stored(info) }
        }
        uploads.append(u)
        return u
    }
    func stored(_ info: ImageInfo) { images[info.name] = info }
    func deleteImage(_ name: String) async throws {
        guard images.removeValue(forKey: name) != nil else { throw RequestError.notFound("no image named '\(name)'") }
    }
    func disks() async throws -> JSONValue { .array([.object(["path": .string("/dev/vda"), "size": .int(1 << 30)])]) }
    func startInstall(_ body: JSONValue) async throws -> TaskInfo {
        var t = TaskInfo(id: "t1", kind: "install", state: .succeeded, progress: 100, message: "planned")
        t.resultJSON = "{\"dry_run\":true}"
        return t
    }
    func task(_ id: String) async throws -> TaskInfo {
        guard id == "t1" else { throw RequestError.notFound("no task '\(id)'") }
        return TaskInfo(id: "t1", kind: "install", state: .running, progress: 50)
    }
    func tasks() async -> [TaskInfo] { [TaskInfo(id: "t1", kind: "install", state: .running, progress: 50)] }
    func metrics() async -> String { "# TYPE cloudbios_vms gauge\ncloudbios_vms \(vms.count)\n" }
}

/// Counts what it receives; keeps no body bytes.
final class FakeUpload: ImageUpload, @unchecked Sendable {
    let name: String
    let expectedSize: Int64?
    let failAfter: Int?
    private let lock = Lock()
    private(set) var chunks = 0
    private(set) var bytes = 0
    private(set) var checksum: UInt64 = 0
    private(set) var finished = false
    private(set) var aborted = false
    let onFinish: @Sendable (ImageInfo) -> Void

    init(name: String, expectedSize: Int64?, failAfter: Int?, onFinish: @escaping @Sendable (ImageInfo) -> Void) {
        self.name = name; self.expectedSize = expectedSize; self.failAfter = failAfter; self.onFinish = onFinish
    }
    func write(_ chunk: UnsafeRawBufferPointer) throws {
        try lock.withLock {
            chunks += 1
            bytes += chunk.count
            for b in chunk { checksum = checksum &* 31 &+ UInt64(b) }
            if let failAfter, bytes > failAfter { throw RequestError(.noSpace, "no space left for image '\(name)'") }
        }
    }
    func finish() async throws -> ImageInfo {
        lock.withLock { finished = true }
        let info = ImageInfo(name: name, size: Int64(lock.withLock { bytes }))
        onFinish(info)
        return info
    }
    func abort() { lock.withLock { aborted = true } }
    typealias Snapshot = (chunks: Int, bytes: Int, checksum: UInt64, finished: Bool, aborted: Bool)
    var snapshot: Snapshot {
        lock.withLock { (chunks, bytes, checksum, finished, aborted) }
    }
}

func makeTempDir(_ tag: String) -> String {
    var template = Array("/tmp/cbpanel-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: p!)
}
