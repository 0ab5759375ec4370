import Testing
@testable import Install
import Disks
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

func sh(_ cmd: String) throws -> String {
    let r = try Launcher("/bin/sh", ["-c", cmd]).run(mergeError: false)
    if r.status != 0 { throw SystemError("\(cmd) -> \(r.status): \(r.output)", errno: EIO) }
    return r.output
}

/// Real installs to disk image files: no root disks, no loop devices.
@Suite(.serialized) struct ImageInstallTests {
    let dir: String

    init() throws {
        dir = "/tmp/cb-install-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir + "/store")
        try Files.makeDirectories(dir + "/cfg/guest")
        _ = try sh("head -c 1500000 /dev/urandom > \(dir)/vmlinuz && head -c 2500000 /dev/urandom > \(dir)/initramfs.img && head -c 700000 /dev/urandom > \(dir)/cloudbios.sqfs")
        _ = try sh("echo guest-kernel > \(dir)/cfg/guest/vmlinuz")
        // A sparse store image: 64 MiB with 1 MiB of data in the middle.
        _ = try sh("truncate -s 64M \(dir)/store/disk.raw && dd if=/dev/urandom of=\(dir)/store/disk.raw bs=1M seek=20 count=1 conv=notrunc status=none")
        try Files.writeAtomically(dir + "/cfg/cloudbios.yaml", """
        version: 1
        hostname: box1
        images:
          - name: tiny-kernel
            file: guest/vmlinuz
        vms:
          - name: tiny
            memory: 256
            kernel: tiny-kernel
            autostart: true
            display: true
          - name: web
            memory: 128
        install:
          disk: {serial: "TARGET*"}
          after: poweroff

        """)
    }

    func cleanup() { Files.removeTree(dir) }

    func config() throws -> (CloudBIOSConfig, String) {
        let p = dir + "/cfg/cloudbios.yaml"
        return (try ConfigLoader.load(path: p, text: try Files.readString(p)), p)
    }

    func sources(kernel: String? = nil) -> InstallSources {
        var s = InstallSources(kernel: kernel ?? dir + "/vmlinuz", initramfs: dir + "/initramfs.img")
        s.stagingDir = dir
        s.imageStore = dir + "/store"
        return s
    }

    func diskTable(target: String, decoy: String) throws -> [DiskInfo] {
        var t = try Disks.inspect(path: target); t.serial = "TARGET01"
        var d = try Disks.inspect(path: decoy); d.serial = "DECOY01"
        return [d, t]
    }

    func makeDecoy(size: String = "256M") throws -> String {
        let decoy = dir + "/decoy.img"
        try Files.makeDirectories(dir + "/decoydata")
        try Files.writeAtomically(dir + "/decoydata/precious.txt", "do not touch")
        _ = try sh("truncate -s \(size) \(decoy) && mkfs.ext4 -q -F -L PRECIOUS -d \(dir)/decoydata \(decoy)")
        return decoy
    }

    func sha(_ p: String) throws -> String { try sh("sha256sum \(p) | cut -d' ' -f1") }

    func at(_ img: String, _ mib: Int) -> String { "\(img)?offset=\(mib << 20)" }

    @Test func installsToASparseImageAndLeavesTheDecoyAlone() throws {
        defer { cleanup() }
        let target = dir + "/target.img"
        _ = try sh("truncate -s 2G \(target)")
        let decoy = try makeDecoy()
        let decoySum = try sha(decoy)
        let (cfg, path) = try config()
        var lines: [String] = []
        let ok = Install.headless(config: cfg, configPath: path, sources: sources(), disks: try diskTable(target: target, decoy: decoy)) { lines.append($0) }
        #expect(ok, "\(lines.joined(separator: "\n"))")
        #expect(lines.contains { $0.contains("100% CloudBIOS installed on \(target)") })
        #expect(lines.contains { $0.contains("serial TARGET01 matches \"TARGET*\"") })
        #expect(try sha(decoy) == decoySum)

        // GPT layout as sfdisk sees it.
        let table = try JSONValue.parse(try sh("sfdisk -J \(target)"))
        let parts = try #require(table["partitiontable"]?["partitions"]?.arrayValue)
        #expect(table["partitiontable"]?["label"]?.stringValue == "gpt")
        #expect(parts.compactMap { $0["name"]?.stringValue } == ["cloudbios-bios", "cloudbios-esp", "cloudbios-system", "cloudbios-config", "cloudbios-data"])
        #expect(parts.compactMap { $0["type"]?.stringValue } == ["21686148-6449-6E6F-744E-656564454649", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                                                                  "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                                                                  "0FC63DAF-8483-4772-8E79-3D69D8477DE4"])
        #expect(parts.compactMap { $0["start"]?.intValue } == [2048, 4096, 266240, 1314816, 1380352])

        // What discovery now reports for the image.
        let info = try Disks.inspect(path: target)
        #expect(info.partitions.map { $0.filesystem?.label } == [nil, "CB-ESP", "CB-SYSTEM", "CB-CONFIG", "CB-DATA"])
        #expect(info.cloudbiosInstalled)

        // ESP: GRUB on the removable path and our own.
        let esp = try sh("MTOOLS_SKIP_CHECK=1 mdir -/ -b -i \(target)@@\(2 << 20) ::/")
        #expect(esp.contains("::/EFI/BOOT/BOOTX64.EFI"))
        #expect(esp.contains("::/EFI/cloudbios/grubx64.efi"))
        // Debian's signed chain as the default boot path when the host has it:
        // shim as BOOTX64.EFI, the signed GRUB beside it, its config on the ESP
        // finding the system partition without moving the prefix off the ESP.
        if SignedBootChain.debian.isPresent {
            for f in ["::/EFI/BOOT/grubx64.efi", "::/EFI/BOOT/mmx64.efi", "::/EFI/debian/grub.cfg"] { #expect(esp.contains(f)) }
            _ = try sh("MTOOLS_SKIP_CHECK=1 mcopy -n -i \(target)@@\(2 << 20) ::/EFI/BOOT/BOOTX64.EFI \(dir)/bootx64.out")
            #expect(try sh("cmp \(dir)/bootx64.out \(SignedBootChain.debian.shim) && echo same").contains("same"))
            let early = try sh("MTOOLS_SKIP_CHECK=1 mtype -i \(target)@@\(2 << 20) ::/EFI/debian/grub.cfg")
            let uuid = try Disks.inspect(path: target).partitions[2].filesystem?.uuid ?? "?"
            #expect(early.contains("--fs-uuid --set=root \(uuid)"))
            #expect(early.contains("configfile ($root)/boot/grub/grub.cfg"))
            #expect(!early.contains("prefix"))
        }

        // System partition: kernel, initramfs, grub.cfg with one entry per VM, the marker.
        let sys = try sh("debugfs -R 'ls -p /' '\(at(target, 130))' 2>/dev/null")
        for f in ["vmlinuz", "initramfs.img", "cloudbios.sqfs", "cloudbios-installed", "boot"] { #expect(sys.contains("/\(f)/")) }
        #expect(try sh("debugfs -R 'dump /cloudbios.sqfs \(dir)/p.out' '\(at(target, 130))' 2>/dev/null; cmp \(dir)/p.out \(dir)/cloudbios.sqfs && echo same").contains("same"))
        #expect(try sh("debugfs -R 'dump /vmlinuz \(dir)/k.out' '\(at(target, 130))' 2>/dev/null; cmp \(dir)/k.out \(dir)/vmlinuz && echo same").contains("same"))
        let grub = try sh("debugfs -R 'cat /boot/grub/grub.cfg' '\(at(target, 130))' 2>/dev/null")
        #expect(grub.contains("cloudbios.display=tiny"))
        #expect(grub.contains("cloudbios.display=web"))
        #expect(grub.contains("cloudbios.display=none"))
        #expect(grub.contains("cloudbios.rescue=1"))
        #expect(grub.contains("set default=\"vm-tiny\""))
        let uuid = info.partitions[2].filesystem?.uuid ?? "?"
        #expect(grub.contains("--fs-uuid --set=root \(uuid)"))
        #expect(try sh("debugfs -R 'ls /boot/grub/i386-pc' '\(at(target, 130))' 2>/dev/null").contains("normal.mod"))

        // Config partition: the config without install:.
        let yaml = try sh("debugfs -R 'cat /cloudbios.yaml' '\(at(target, 642))' 2>/dev/null")
        #expect(yaml.contains("name: tiny"))
        #expect(!yaml.contains("install:"))
        #expect(!yaml.contains("TARGET"))
        #expect((try? ConfigLoader.load(path: "c.yaml", text: yaml)) != nil)

        // Data partition: the store (sparse file intact) and the config's images.
        let images = try sh("debugfs -R 'ls -l /images' '\(at(target, 674))' 2>/dev/null")
        #expect(images.contains("tiny-kernel"))
        #expect(images.contains("disk.raw"))
        _ = try sh("debugfs -R 'dump /images/disk.raw \(dir)/d.out' '\(at(target, 674))' 2>/dev/null")
        #expect(try sha(dir + "/d.out") == (try sha(dir + "/store/disk.raw")))

        // BIOS boot: GRUB's boot code in the MBR, the protective MBR's table kept.
        let mbr = try Files.read(target, limit: 512)
        let bootImg = try Files.read("/usr/lib/grub/i386-pc/boot.img")
        #expect(Array(mbr[0..<3]) == Array(bootImg[0..<3]))
        #expect(mbr[0x1c2] == 0xee)   // GPT protective partition type
        #expect(mbr[0x5c] == 0x00 && mbr[0x5d] == 0x08)   // core.img at sector 2048

        // Still sparse: the install wrote about what it had to.
        let used = try sh("du -k \(target) | cut -f1").trimmingCharacters()
        #expect((Int(used) ?? .max) < 400 * 1024)
    }

    /// A machine running without a config file (its admin made by the
    /// first-run setup, in RAM) installs through the panel's installer: the
    /// config partition gets a config that loads and the machine's own
    /// users, so the installed system logs in with them.
    @Test func anInstallWithoutAConfigFileTakesTheMachinesOwnUsers() async throws {
        defer { cleanup() }
        let target = dir + "/target.img"
        _ = try sh("truncate -s 2G \(target)")
        let decoy = try makeDecoy()
        let admin = PanelUser(name: "admin", passwordHash: "$6$salt$hash", sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e@test"])
        let src = sources()
        let installer = Installer(config: CloudBIOSConfig(), configText: "", sources: { src }, localUsers: { [admin] })
        var t = try installer.startInstall(try JSONValue.parse(#"{"disk": {"serial": "TARGET01"}}"#),
                                           disks: try diskTable(target: target, decoy: decoy))
        let deadline = Clock.monotonic() + 120
        while t.state == .running || t.state == .pending {
            #expect(Clock.monotonic() < deadline)
            try await Task.sleep(nanoseconds: 100_000_000)
            t = try #require(installer.task(t.id))
        }
        #expect(t.state == .succeeded, "\(t.message)")
        let yaml = try sh("debugfs -R 'cat /cloudbios.yaml' '\(at(target, 642))' 2>/dev/null")
        #expect(yaml == "version: 1\n")
        #expect((try? ConfigLoader.load(path: "c.yaml", text: yaml)) != nil)
        let users = try sh("debugfs -R 'cat /users.yaml' '\(at(target, 642))' 2>/dev/null")
        #expect(try LocalUsers.parse(path: "users.yaml", text: users) == [admin])
        #expect(try sh("debugfs -R 'stat /users.yaml' '\(at(target, 642))' 2>/dev/null").contains("Mode:  0600"))
    }

    /// The headless install takes the users made on the machine beside its
    /// config too.
    @Test func aHeadlessInstallTakesTheUsersBesideTheConfig() throws {
        defer { cleanup() }
        let target = dir + "/target.img"
        _ = try sh("truncate -s 2G \(target)")
        let decoy = try makeDecoy()
        let admin = PanelUser(name: "ops", passwordHash: "$6$salt$other")
        try Files.writeAtomically(dir + "/cfg/users.yaml", LocalUsers.render([admin]))
        let (cfg, path) = try config()
        var lines: [String] = []
        let ok = Install.headless(config: cfg, configPath: path, sources: sources(), disks: try diskTable(target: target, decoy: decoy)) { lines.append($0) }
        #expect(ok, "\(lines.joined(separator: "\n"))")
        let users = try sh("debugfs -R 'cat /users.yaml' '\(at(target, 642))' 2>/dev/null")
        #expect(try LocalUsers.parse(path: "users.yaml", text: users) == [admin])
    }

    @Test func refusesANonEmptyDiskWithoutWipeAndChangesNothing() throws {
        defer { cleanup() }
        let decoy = try makeDecoy(size: "1G")
        let sum = try sha(decoy)
        var cfg = try config().0
        cfg.install?.disk.serial = "DECOY*"
        var lines: [String] = []
        let target = dir + "/blank.img"
        _ = try sh("truncate -s 2G \(target)")
        let ok = Install.headless(config: cfg, configPath: dir + "/cfg/cloudbios.yaml", sources: sources(),
                                  disks: try diskTable(target: target, decoy: decoy)) { lines.append($0) }
        #expect(!ok)
        #expect(lines.contains { $0.contains("REFUSED") && $0.contains("not empty") && $0.contains("wipe: true") })
        #expect(lines.contains { $0.contains("PRECIOUS") })
        #expect(try sha(decoy) == sum)
    }

    @Test func anInterruptedInstallIsNotBootableAndRerunsCleanly() throws {
        defer { cleanup() }
        let target = dir + "/target.img"
        _ = try sh("truncate -s 2G \(target)")
        let decoy = try makeDecoy()
        let (cfg, path) = try config()
        // Fails in the stage phase (after wipe and partitioning).
        var lines: [String] = []
        let ok = Install.headless(config: cfg, configPath: path, sources: sources(kernel: dir + "/missing-kernel"),
                                  disks: try diskTable(target: target, decoy: decoy)) { lines.append($0) }
        #expect(!ok)
        #expect(lines.contains { $0.contains("FAILED") && $0.contains("missing-kernel") })
        let half = try Disks.inspect(path: target)
        #expect(half.isInterruptedInstall)
        #expect(!half.partitions.contains { $0.filesystem?.label == Layout.systemLabel })
        // Running it again (no wipe needed for our own unfinished layout) completes.
        lines = []
        let again = Install.headless(config: cfg, configPath: path, sources: sources(), disks: try diskTable(target: target, decoy: decoy)) { lines.append($0) }
        #expect(again, "\(lines.joined(separator: "\n"))")
        #expect(try Disks.inspect(path: target).partitions.contains { $0.filesystem?.label == Layout.systemLabel })
        // A finished install is not redone without wipe.
        #expect(!Install.headless(config: cfg, configPath: path, sources: sources(), disks: try diskTable(target: target, decoy: decoy)) { _ in })
    }

    @Test func imageWriterCopiesDataAndZeroesHoles() throws {
        defer { cleanup() }
        let src = dir + "/src.img", target = dir + "/t.img"
        _ = try sh("truncate -s 32M \(src) && dd if=/dev/urandom of=\(src) bs=1M seek=3 count=2 conv=notrunc status=none && dd if=/dev/urandom of=\(src) bs=4k seek=7000 count=3 conv=notrunc status=none")
        // The target range starts out full of garbage.
        _ = try sh("truncate -s 1G \(target) && dd if=/dev/urandom of=\(target) bs=1M count=48 conv=notrunc status=none")
        var t = try Disks.inspect(path: target)
        t.partitionTable = nil; t.partitions = []; t.filesystem = nil
        var i = InstallConfig(); i.disk.path = target; i.wipe = true
        let plan = try Planner.plan(i, disks: [], target: t)
        let dev = try TargetDevice(plan.target)
        let stats = try ImageWriter.write(src, to: dev, at: 8 << 20, deferHead: 64 << 10)
        #expect(stats.dataBytes < 4 << 20)
        _ = try sh("dd if=\(target) of=\(dir)/range bs=1M skip=8 count=32 status=none")
        #expect(try sha(dir + "/range") == (try sha(src)))
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let l = s.last, l == "\n" || l == " " { s.removeLast() }
        return String(s)
    }
}
