#if canImport(Glibc)
import Glibc
#endif
import Platform
import CDisks

/// The USB stick CloudBIOS booted from (its ISO written raw): what the
/// first-run setup may add to it — one small `CBCONFIG` FAT partition in
/// the free space after the ISO image, holding `cloudbios.yaml` — so the
/// next boot of the same stick finds its admin. Nothing else on the stick,
/// and no other disk, is touched.
public enum BootStick {
    public static let partitionMiB: Int64 = 32
    public static let label = "CBCONFIG"
    /// GPT type "Microsoft basic data", what FAT volumes carry.
    static let basicData = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"

    /// Why a config partition cannot be added to `disk` (the boot medium's
    /// whole-disk device, as PID 1 names it); nil when it can.
    public static func blocker(disk: String?, sys: String = "/sys") -> String? {
        guard let disk else { return "no boot medium was found (a network boot keeps nothing)" }
        let name = String(disk.split(separator: "/").last ?? "")
        guard !name.isEmpty, Files.isDirectory(sys + "/block/" + name) else { return "the boot medium \(disk) is not a disk" }
        if name.hasPrefix("sr") || Files.readTrimmed(sys + "/block/\(name)/device/type") == "5" {
            return "this machine booted from a CD/DVD, which is read-only; write the ISO to a USB stick to keep settings on it"
        }
        if Files.readTrimmed(sys + "/block/\(name)/ro") == "1" { return "the boot medium \(disk) is read-only" }
        return nil
    }

    /// The sector after the ISO 9660 image at the start of `disk` (its
    /// volume space size), or nil when the disk holds no ISO 9660 image.
    public static func imageEnd(disk: String) -> Int64? {
        let fd = open(disk, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var pvd = [UInt8](repeating: 0, count: 2048)
        let n = pvd.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 2048, 16 * 2048) }
        guard n == 2048, pvd[0] == 1, Array(pvd[1...5]) == Array("CD001".utf8) else { return nil }
        let blocks = Int64(pvd[80]) | Int64(pvd[81]) << 8 | Int64(pvd[82]) << 16 | Int64(pvd[83]) << 24
        let blockSize = Int64(pvd[128]) | Int64(pvd[129]) << 8
        return blocks * blockSize / 512
    }

    /// Adds the CBCONFIG partition after the image, formats it, writes
    /// `files` (name → text) at its root and leaves it mounted read-only at
    /// `mountDir`, which it returns. Refuses when `blocker` does, when the
    /// stick has no room (`partitionMiB` after the image), or when it has a
    /// CBCONFIG partition already.
    public static func addConfigPartition(disk: String, files: [String: String], mountDir: String,
                                          log: (String) -> Void) throws -> String {
        if let why = blocker(disk: disk) { throw InstallError.failed(why) }
        let name = String(disk.split(separator: "/").last ?? "")
        guard let end = imageEnd(disk: disk) else { throw InstallError.failed("\(disk) does not start with a CloudBIOS ISO image") }
        let sectors = Int64(Files.readTrimmed("/sys/block/\(name)/size") ?? "") ?? 0
        // after the image and after every partition it has, 1 MiB aligned
        var start = end
        for p in Files.list("/sys/block/\(name)") where p.hasPrefix(name) {
            let s = Int64(Files.readTrimmed("/sys/block/\(name)/\(p)/start") ?? "") ?? 0
            let n = Int64(Files.readTrimmed("/sys/block/\(name)/\(p)/size") ?? "") ?? 0
            start = max(start, s + n)
        }
        start = (start + 2047) / 2048 * 2048
        let size = partitionMiB * 2048
        // GPT keeps a 33-sector backup at the end of the disk
        guard start + size + 34 <= sectors else {
            throw InstallError.failed("the stick has no room for a \(partitionMiB) MiB config partition after the ISO image")
        }
        let before = Set(partitions(of: name))
        log("first run: adding a \(partitionMiB) MiB \(label) partition to \(disk) at sector \(start)")
        // the image's GPT ends where the ISO does: move its backup to the
        // end of the stick first, then add the partition
        _ = try? Launcher("/usr/sbin/sfdisk", ["--relocate", "gpt-bak-std", disk]).run()
        let script = "start=\(start), size=\(size), type=\(basicData), name=\(label)\n"
        // (the stick's image is in use, so --force; our own checks above
        // keep the new partition after everything on the stick)
        let r = try runWithInput("/usr/sbin/sfdisk", ["--append", "--force", "--no-reread", "--no-tell-kernel", "--wipe", "never",
                                                      "--wipe-partitions", "always", disk], input: script)
        guard r.status == 0 else { throw InstallError.failed("sfdisk: \(r.output.split(separator: "\n").last ?? "")") }
        // tell the kernel of that partition alone: the others are in use
        let number = (partitions(of: name).compactMap { Int(Files.readTrimmed("/sys/block/\(name)/\($0)/partition") ?? "") }.max() ?? 0) + 1
        let fd = open(disk, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open \(disk)", errno: currentErrno()) }
        let rc = cb_disks_add_partition(fd, Int32(number), start * 512, size * 512)
        let e = currentErrno()
        close(fd)
        if rc != 0 { throw InstallError.failed("the kernel refused the new partition \(number) of \(disk): \(SystemError("BLKPG", errno: e))") }
        var part: String?
        for _ in 0..<50 {
            part = partitions(of: name).first { !before.contains($0) }
            if let p = part, Files.exists("/dev/" + p) { break }
            usleep(100_000)
        }
        guard let p = part else { throw InstallError.failed("the kernel did not show the new partition of \(disk)") }
        let dev = "/dev/" + p
        let mk = try Launcher("/usr/sbin/mkfs.fat", ["-n", label, dev]).run()
        guard mk.status == 0 else { throw InstallError.failed("mkfs.fat \(dev): \(mk.output.split(separator: "\n").joined(separator: " "))") }
        try Mount.mount(dev, on: mountDir, type: "vfat", flags: UInt(MS_NOSUID | MS_NODEV), options: "umask=077")
        do {
            for (file, text) in files.sorted(by: { $0.key < $1.key }) {
                try Files.writeAtomically(mountDir + "/" + file, text, mode: 0o600)
            }
        } catch {
            _ = try? Mount.unmount(mountDir)
            throw error
        }
        sync()
        _ = Glibc.mount(dev, mountDir, "vfat", UInt(MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV), "umask=077")
        log("first run: \(dev) (\(label)) holds \(files.keys.sorted().joined(separator: ", "))")
        return mountDir
    }

    static func partitions(of name: String) -> [String] {
        Files.list("/sys/block/\(name)").filter { $0.hasPrefix(name) && Files.exists("/sys/block/\(name)/\($0)/partition") }
    }

    /// Runs a tool with `input` on its standard input.
    static func runWithInput(_ path: String, _ args: [String], input: String) throws -> (status: Int32, output: String) {
        let tmp = "/run/cloudbios/sfdisk-\(getpid()).in"
        try Files.makeDirectories(Files.parent(of: tmp))
        try Files.writeAtomically(tmp, input, mode: 0o600)
        defer { Files.remove(tmp) }
        let fd = try FileDescriptor.open(tmp, O_RDONLY)
        defer { fd.close() }
        return try Launcher(path, args).run(stdin: fd)
    }
}
