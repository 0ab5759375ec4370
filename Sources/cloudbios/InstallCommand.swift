import ArgumentParser
import Config
import Disks
import Install
import Platform

struct InstallCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install CloudBIOS to the disk the config's install: section selects (or --target).",
        discussion: """
        The target is GPT-partitioned (BIOS boot, ESP, system, config, data), gets GRUB for BIOS \
        and UEFI, the kernel and initramfs, the config without install:, and the image store. \
        The boot medium is never a target; a selector matching several disks is refused; a disk \
        holding partitions or filesystems is refused unless wipe is set. --dry-run prints the plan.
        """)

    @Option(name: .long, help: "The config file (cloudbios.yaml).")
    var config: String?

    @Option(name: .long, help: ArgumentHelp("Write this raw disk image to --target instead of installing (sparse-aware; the same safety checks).", valueName: "IMAGE"))
    var writeImage: String?

    @Flag(name: .long, help: "Print the plan (which disk, why, what is destroyed) and change nothing.")
    var dryRun = false

    @Option(name: .long, help: "Install to this disk image file or device instead of the selector's match (every other check still applies).")
    var target: String?

    @Flag(name: .long, help: "Allow destroying a disk that holds data (as install.wipe: true).")
    var wipe = false

    @Option(name: .long, help: "Kernel to install (default: the boot medium's, else images/out/vmlinuz).")
    var kernel: String?

    @Option(name: .long, help: "Initramfs to install (default: the boot medium's, else images/out/initramfs.img).")
    var initramfs: String?

    @Option(name: .long, help: "GRUB directory holding i386-pc/ and x86_64-efi/.")
    var grubDir = "/usr/lib/grub"

    @Option(name: .long, help: "Image store copied to the data partition.")
    var imageStore = "/var/lib/cloudbios/images"

    @Flag(name: .long, help: "Print the dry-run plan as JSON.")
    var json = false

    mutating func execute() async throws {
        if let image = writeImage { return try writeRaw(image) }
        guard let config else { throw CLIError("install: give --config FILE", code: 2) }
        let text: String
        do { text = try Files.readString(config) } catch { throw CLIError("\(config): cannot read: \(error)", code: 2) }
        var cfg: CloudBIOSConfig
        do { cfg = try ConfigLoader.load(path: config, text: text) } catch {
            throw CLIError(error.errors.map(\.description).joined(separator: "\n"), code: 2)
        }
        if cfg.install == nil {
            guard target != nil else { throw CLIError("\(config): no install: section (or give --target)", code: 2) }
            cfg.install = InstallConfig()
        }
        if wipe { cfg.install!.wipe = true }
        let targetInfo: DiskInfo?
        do { targetInfo = try target.map { p throws(DiskError) -> DiskInfo in try Disks.inspect(path: p) } } catch {
            throw CLIError("\(error)", code: 2)
        }
        let disks = Disks.list()
        if dryRun {
            do {
                let plan = try Planner.plan(cfg.install!, disks: disks, target: targetInfo)
                print(json ? plan.json.serialized(pretty: true) : plan.text, terminator: json ? "\n" : "")
            } catch {
                printErr("install: REFUSED: \(error)")
                throw ExitCode(2)
            }
            return
        }
        var sources: InstallSources
        do { sources = try Install.defaultSources(kernel: kernel, initramfs: initramfs, imageStore: imageStore) } catch {
            throw CLIError("\(error)", code: 2)
        }
        sources.grubDir = grubDir
        let ok = Install.headless(config: cfg, configPath: config, target: target, sources: sources, disks: disks) { line in
            Log.info(line)
        }
        if !ok { throw ExitCode(1) }
    }

    /// `--write-image IMAGE --target PATH`: the image writer on its own
    /// (benchmarks, writing a prepared disk image).
    func writeRaw(_ image: String) throws {
        guard let target else { throw CLIError("--write-image needs --target", code: 2) }
        let info: DiskInfo
        do { info = try Disks.inspect(path: target) } catch { throw CLIError("\(error)", code: 2) }
        var sel = InstallConfig()
        sel.wipe = wipe
        guard let size = Files.size(image) else { throw CLIError("\(image) does not exist", code: 2) }
        let plan: InstallPlan
        // The target alone is inspected (its contents, mounts, and whether
        // it is the boot medium): the other disks play no part in the plan.
        do { plan = try Planner.plan(sel, disks: [info], target: info, rawImageSize: size) } catch {
            printErr("install: REFUSED: \(error)")
            throw ExitCode(2)
        }
        let t = try TargetDevice(plan.target)
        let stats = try ImageWriter.write(image, to: t, at: 0)
        try t.rereadPartitions()
        Log.info("wrote \(image) to \(target): \(Sizes.human(stats.dataBytes)) data, \(Sizes.human(stats.zeroedBytes)) zeroed without writing")
    }
}
