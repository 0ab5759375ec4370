import ArgumentParser
import Config
import Disks
import Install
import Platform

/// `cloudbios disks init DISK [--wipe]`: the disk becomes a data disk, one
/// GPT partition with an ext4 filesystem labelled CB-DATA, which PID 1
/// mounts at boot for the image store, VM disks and backups.
struct DisksInitCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make a disk a data disk (CB-DATA) that keeps images, VMs and backups across boots.",
        discussion: """
        The disk gets a GPT with one ext4 partition labelled CB-DATA filling it. The boot medium \
        and a disk in use are refused; a disk holding partitions, filesystems or other data is \
        refused unless --wipe is given. An ISO or USB boot mounts the CB-DATA partition it finds \
        at /var/lib/cloudbios; through the panel (POST /api/v1/disks/NAME/init) the state in RAM \
        moves onto it at once.
        """)

    @Argument(help: "The disk: a device node (/dev/sdb), its name (sdb), or a disk image file.")
    var disk: String

    @Flag(name: .long, help: "Allow destroying what the disk holds.")
    var wipe = false

    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    mutating func execute() async throws {
        let path = disk.hasPrefix("/") || disk.contains("/") || Names.checkBlockDevice(disk) != nil ? disk : "/dev/" + disk
        let info: DiskInfo
        do { info = try Disks.inspect(path: path) } catch { throw CLIError("disks init: \(error)", code: 2) }
        let plan: DataDisk.Plan
        do {
            plan = try DataDisk.plan(info, disks: Disks.list(), wipe: wipe, unknownData: DataDisk.firstMiBHoldsData(info.path) ?? false)
        } catch {
            throw CLIError("disks init: REFUSED: \(error)", code: 3)
        }
        if !plan.destroys.isEmpty && !json { print("wiping \(info.label): \(plan.destroys.joined(separator: "; "))") }
        let device: String
        do {
            device = try DataDisk.make(plan) { p, m in if !json { print("\(p)% \(m)") } }
        } catch {
            throw CLIError("disks init: FAILED: \(error)")
        }
        if json {
            print(JSONValue.object(["disk": .string(info.path), "device": .string(device), "label": .string(Layout.dataLabel),
                                    "plan": plan.json]).serialized(pretty: true))
        } else {
            print("100% \(info.path) is a data disk: \(device) (\(Layout.dataLabel)); CloudBIOS keeps its state on it from the next boot")
        }
    }
}
