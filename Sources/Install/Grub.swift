import Platform

/// GRUB for both firmwares, made with grub-mkimage from the module
/// directories (no grub-install, no mounted filesystems, works on image files).
public enum GrubImages {
    public static let biosModules = ["biosdisk", "part_gpt", "part_msdos", "ext2", "fat", "search", "search_fs_uuid",
                                     "search_label", "normal", "configfile", "linux", "echo", "test", "ls", "cat",
                                     "serial", "terminal", "sleep", "reboot", "halt", "gzio", "minicmd", "all_video"]
    public static let efiModules = ["part_gpt", "part_msdos", "ext2", "fat", "search", "search_fs_uuid", "search_label",
                                    "normal", "configfile", "linux", "echo", "test", "ls", "cat", "serial", "terminal",
                                    "sleep", "reboot", "halt", "gzio", "minicmd", "all_video", "efi_gop", "efi_uga"]

    /// Builds `core.img` (i386-pc) and `BOOTX64.EFI` (x86_64-efi) whose early
    /// config finds the system partition by UUID.
    static func build(grubDir: String, systemUUID: String, into dir: String) throws -> (core: String, efi: String) {
        let early = dir + "/early.cfg"
        try Files.writeAtomically(early, GrubMenu.early(systemUUID: systemUUID))
        let core = dir + "/core.img", efi = dir + "/BOOTX64.EFI"
        try Tool.run("grub-mkimage", ["-O", "i386-pc", "-d", grubDir + "/i386-pc", "-c", early, "-p", "/boot/grub", "-o", core]
                     + available(biosModules, in: grubDir + "/i386-pc"))
        try Tool.run("grub-mkimage", ["-O", "x86_64-efi", "-d", grubDir + "/x86_64-efi", "-c", early, "-p", "/boot/grub", "-o", efi]
                     + available(efiModules, in: grubDir + "/x86_64-efi"))
        return (core, efi)
    }
}

/// The modules of `wanted` present in `dir` (a PE may carry a subset; the
/// essential ones are checked before).
func available(_ wanted: [String], in dir: String) -> [String] {
    wanted.filter { Files.exists("\(dir)/\($0).mod") }
}

/// What grub-bios-setup does for a GPT disk with a BIOS boot partition:
/// core.img into the partition with its first blocklist pointing at the
/// rest of itself, and boot.img into the MBR pointing at core.img, keeping
/// the partition table. Pure, on byte arrays.
public enum BIOSBoot {
    // Offsets in boot.img (grub/include/grub/i386/pc/boot.h).
    static let bpbStart = 0x03, bpbEnd = 0x5a
    static let kernelSector = 0x5c
    static let bootDrive = 0x64
    static let driveCheck = 0x66
    static let ntMagic = 0x1b8, partEnd = 0x1fe

    /// The new MBR: boot.img's code with the existing BPB and partition table.
    public static func mbr(bootImage: [UInt8], existing: [UInt8], coreSector: UInt64) throws -> [UInt8] {
        guard bootImage.count == 512, existing.count == 512 else { throw InstallError.bootloader("boot.img must be 512 bytes") }
        var m = bootImage
        m.replaceSubrange(bpbStart..<bpbEnd, with: existing[bpbStart..<bpbEnd])
        m.replaceSubrange(ntMagic..<partEnd, with: existing[ntMagic..<partEnd])
        m[driveCheck] = 0x90; m[driveCheck + 1] = 0x90   // not a floppy: trust no BIOS drive number quirk
        m[bootDrive] = 0xff
        for i in 0..<8 { m[kernelSector + i] = UInt8((coreSector >> (8 * UInt64(i))) & 0xff) }
        m[0x1fe] = 0x55; m[0x1ff] = 0xaa
        return m
    }

    /// core.img with its first blocklist (end of sector 0, diskboot.img)
    /// aimed at `coreSector + 1`.
    public static func patchCore(_ core: [UInt8], coreSector: UInt64) throws -> [UInt8] {
        guard core.count > 512 else { throw InstallError.bootloader("core.img is too small") }
        var c = core
        // struct { u64 start; u16 len; u16 segment } at 512 - 12.
        let at = 512 - 12
        let start = coreSector + 1
        for i in 0..<8 { c[at + i] = UInt8((start >> (8 * UInt64(i))) & 0xff) }
        let len = UInt16(c[at + 8]) | UInt16(c[at + 9]) << 8
        let sectors = (core.count + 511) / 512
        guard Int(len) == sectors - 1 else {
            throw InstallError.bootloader("core.img blocklist says \(len) sectors, the image has \(sectors - 1) after the first")
        }
        let seg = UInt16(c[at + 10]) | UInt16(c[at + 11]) << 8
        guard seg == 0x820 else { throw InstallError.bootloader("unexpected core.img load segment \(seg)") }
        let pad = sectors * 512 - c.count
        if pad > 0 { c += [UInt8](repeating: 0, count: pad) }
        return c
    }
}

/// Runs an external tool, throwing its output on failure.
enum Tool {

    @discardableResult
    static func run(_ name: String, _ args: [String]) throws -> String {
        guard let path = Launcher.which(name, path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") else {
            throw InstallError.missingSource("\(name) is not installed")
        }
        Log.debug("run: \(name) \(args.joined(separator: " "))")
        let env = Launcher.defaultEnvironment + ["MTOOLS_SKIP_CHECK=1"]
        let r = try Launcher(path, args, environment: env, newSession: false).run()
        if r.status != 0 { throw InstallError.tool(([name] + args.prefix(6)).joined(separator: " "), r.status, r.output) }
        return r.output
    }
}
