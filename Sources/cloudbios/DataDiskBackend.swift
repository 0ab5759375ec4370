import Config
import Disks
import Init
import Install
import Panel
import Platform
import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// `POST /api/v1/disks/{name}/init`: a disk made into a data disk for the
/// state, as a task. When the state is in RAM on a machine CloudBIOS runs
/// (an ISO or USB boot) and no VM is running, it moves onto the new
/// partition at once and lasts from then on; otherwise the new partition
/// holds the state from the next boot.
extension VMManagerBackend {
    func initDisk(_ name: String, wipe: Bool) async throws -> TaskInfo {
        let disks = Disks.list()
        guard let disk = disks.first(where: { $0.name == name }) else { throw DataDiskError.noSuchDisk(name) }
        let plan = try DataDisk.plan(disk, disks: disks, wipe: wipe, unknownData: DataDisk.firstMiBHoldsData(disk.path) ?? false)
        let tasks = manager.tasks
        guard !tasks.running(disk.path, kind: "disk-init") else { throw RequestError.conflict("\(disk.path) is being made a data disk already") }
        if let why = Payload.waitUsable(timeout: 30) {
            throw RequestError(.unavailable, "the disk tools (mke2fs, libparted) are not available: \(why)")
        }
        let stateDir = manager.stateDir
        let busy = await manager.activeVMNames()
        let pid1 = Files.readLink("/proc/1/exe")
        let underCloudBIOS = pid1 != nil && pid1 == Files.readLink("/proc/self/exe")
        let task = tasks.begin("disk-init", on: disk.path)
        Log.info("disks: making \(disk.path) a data disk (CB-DATA)" + (plan.destroys.isEmpty ? "" : "; wiping: \(plan.destroys.joined(separator: "; "))"))
        spawnThread {
            tasks.update(task.id) { $0.state = .running }
            do {
                let device = try DataDisk.make(plan) { p, m in tasks.update(task.id) { $0.progress = min(p, 95); $0.message = m } }
                var result: [String: JSONValue] = ["disk": .string(disk.path), "device": .string(device), "label": .string(Layout.dataLabel)]
                var message = "\(disk.path) is a data disk: \(device) (\(Layout.dataLabel))"
                if !Mount.isVolatile(stateDir) {
                    message += "; the state stays where it is (\(StateStorage.describe(stateDir).note)) until the next boot"
                    result["state"] = .string("next-boot")
                } else if !underCloudBIOS {
                    message += "; this daemon does not run the machine, so it is used from the next CloudBIOS boot"
                    result["state"] = .string("next-boot")
                } else if !busy.isEmpty {
                    message += "; VMs are running (\(busy.joined(separator: ", "))), so the state moves onto it at the next boot"
                    result["state"] = .string("next-boot")
                } else {
                    tasks.update(task.id) { $0.progress = 96; $0.message = "moving the state from RAM onto \(device)" }
                    try StateStorage.moveIntoPlace(stateDir, device: device) { Log.info($0) }
                    let manager = self.manager
                    Task { await manager.restartNATDHCP() }
                    message += "; the state moved onto it from RAM and lasts from now on"
                    result["state"] = .string("moved")
                }
                Log.info("disks: \(message)")
                tasks.succeed(task.id, message, result: .object(result))
            } catch {
                Log.error("disks: making \(disk.path) a data disk failed: \(error)")
                tasks.fail(task.id, error)
            }
        }
        return task
    }
}
