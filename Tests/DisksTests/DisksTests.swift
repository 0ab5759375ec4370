import Testing
@testable import Disks
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

func sh(_ cmd: String) throws -> String {
    let r = try Launcher("/bin/sh", ["-c", cmd]).run()
    if r.status != 0 { throw SystemError("\(cmd): \(r.output)", errno: EIO) }
    return r.output
}

func scratch(_ tag: String) throws -> String {
    let d = "/tmp/cb-disks-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    Files.removeTree(d)
    try Files.makeDirectories(d)
    return d
}

@Suite struct ImageInspectionTests {
    @Test func blankImageHoldsNothing() throws {
        let d = try scratch("blank"); defer { Files.removeTree(d) }
        _ = try sh("truncate -s 64M \(d)/blank.img")
        let info = try Disks.inspect(path: "\(d)/blank.img")
        #expect(info.transport == .file)
        #expect(info.size == 64 << 20)
        #expect(info.partitionTable == nil)
        #expect(info.partitions.isEmpty)
        #expect(!info.holdsData)
        #expect(!info.isBootMedium)
    }

    @Test func gptWithFilesystemsIsSeen() throws {
        let d = try scratch("gpt"); defer { Files.removeTree(d) }
        let img = "\(d)/disk.img"
        _ = try sh("truncate -s 64M \(img) && printf 'label: gpt\\nstart=2048, size=20480, name=alpha\\nstart=22528, name=beta\\n' | sfdisk -q \(img)")
        _ = try sh("mkfs.ext4 -q -F -L DATA1 -U 11111111-2222-3333-4444-555555555555 -E offset=1048576 \(img) 10240k")
        let info = try Disks.inspect(path: img)
        #expect(info.partitionTable == "gpt")
        #expect(info.partitions.count == 2)
        let p1 = try #require(info.partitions.first)
        #expect(p1.number == 1 && p1.start == 1 << 20 && p1.size == 10 << 20)
        #expect(p1.name == "alpha")
        #expect(p1.type == "0fc63daf-8483-4772-8e79-3d69d8477de4")
        #expect(p1.filesystem == FilesystemInfo(type: "ext4", label: "DATA1", uuid: "11111111-2222-3333-4444-555555555555"))
        #expect(info.partitions[1].filesystem == nil)
        #expect(info.holdsData)
        #expect(info.contentsSummary.contains { $0.contains("DATA1") })
        // JSON as GET /api/v1/disks shows it.
        let j = [info].json
        #expect(j[0]?["partitions"]?[0]?["filesystem"]?.stringValue == "ext4")
        #expect(j[0]?["partitions"]?[0]?["label"]?.stringValue == "DATA1")
        #expect(j[0]?["partitions"]?[0]?["name"]?.stringValue == "alpha")
        #expect(j[0]?["partition_table"]?.stringValue == "gpt")
        #expect(j[0]?["size"]?.int64Value == 64 << 20)
        #expect(j[0]?["boot_medium"]?.boolValue == false)
    }

    @Test func isoLabelledCloudBIOSIsTheBootMedium() throws {
        guard Launcher.which("xorriso") != nil else { return }
        let d = try scratch("iso"); defer { Files.removeTree(d) }
        try Files.makeDirectories("\(d)/root")
        try Files.writeAtomically("\(d)/root/hello", "hi")
        _ = try sh("xorriso -as mkisofs -quiet -V CLOUDBIOS -o \(d)/cb.iso \(d)/root 2>&1")
        let info = try Disks.inspect(path: "\(d)/cb.iso")
        #expect(info.filesystem?.type == "iso9660")
        #expect(info.isBootMedium)
    }

    @Test func missingPathIsAnError() {
        #expect(throws: DiskError.self) { try Disks.inspect(path: "/nonexistent/disk.img") }
    }
}

/// A fake /sys, /dev and mountinfo: discovery reads only these.
@Suite struct FakeSysfsTests {
    func makeTree() throws -> (String, DiscoveryRoots) {
        let root = try scratch("sysfs")
        let sys = root + "/sys", dev = root + "/dev"
        func disk(_ name: String, _ devpath: String, _ mm: String, size: Int64, attrs: [String: String]) throws {
            let real = "\(sys)/devices/\(devpath)/block/\(name)"
            try Files.makeDirectories(real + "/queue")
            try Files.makeDirectories(real + "/device")
            try Files.makeDirectories("\(sys)/block")
            try Files.makeDirectories("\(sys)/dev/block")
            try Files.makeDirectories("\(sys)/class/block")
            symlink("../devices/\(devpath)/block/\(name)", "\(sys)/block/\(name)")
            symlink("../../devices/\(devpath)/block/\(name)", "\(sys)/dev/block/\(mm)")
            symlink("../../devices/\(devpath)/block/\(name)", "\(sys)/class/block/\(name)")
            try Files.writeAtomically(real + "/size", "\(size / 512)\n")
            try Files.writeAtomically(real + "/dev", "\(mm)\n")
            for (k, v) in attrs { try Files.writeAtomically(real + "/" + k, v + "\n") }
            try Files.makeDirectories(dev)
            _ = try sh("truncate -s \(size) \(dev)/\(name)")
        }
        try disk("vda", "pci0000:00/0000:00:04.0/virtio1", "254:0", size: 2 << 30,
                 attrs: ["serial": "TARGET01", "queue/rotational": "0", "removable": "0", "ro": "0"])
        try disk("sda", "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0", "8:0", size: 4 << 30,
                 attrs: ["device/model": "QEMU HARDDISK   ", "queue/rotational": "1", "removable": "0", "ro": "0"])
        try disk("sdb", "pci0000:00/0000:00:1d.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", "8:16", size: 1 << 30,
                 attrs: ["device/model": "Flash Disk", "queue/rotational": "0", "removable": "1", "ro": "0"])
        try disk("ram0", "virtual", "1:0", size: 1 << 20, attrs: [:])
        try disk("loop3", "virtual", "7:3", size: 1 << 20, attrs: [:])   // no backing file: skipped
        // VPD page 0x80 serial for sda.
        let vpd: [UInt8] = [0, 0x80, 0, 8] + Array("QM00001 ".utf8)
        let fd = open("\(sys)/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/device/vpd_pg80", O_WRONLY | O_CREAT, 0o644)
        try Files.writeAll(fd, vpd); close(fd)
        // sdb holds the mounted boot medium; vda nothing.
        try Files.writeAtomically(root + "/mountinfo", """
        22 1 8:16 / /run/cloudbios/boot-medium ro,relatime - iso9660 /dev/sdb ro
        23 1 0:5 / /proc rw - proc proc rw

        """)
        var roots = DiscoveryRoots()
        roots.sys = sys; roots.dev = dev; roots.mountinfo = root + "/mountinfo"
        roots.bootDeviceFile = root + "/boot-device"
        return (root, roots)
    }

    @Test func listsDisksWithTransportSerialAndBootMedium() throws {
        let (root, roots) = try makeTree(); defer { Files.removeTree(root) }
        let disks = Disks.list(roots: roots)
        #expect(disks.map(\.name) == ["sda", "sdb", "vda"])
        let vda = try #require(disks.first { $0.name == "vda" })
        #expect(vda.transport == .virtio)
        #expect(vda.serial == "TARGET01")
        #expect(vda.byID == "/dev/disk/by-id/virtio-TARGET01")
        #expect(vda.ssd && !vda.removable && !vda.isBootMedium)
        #expect(vda.size == 2 << 30)
        let sda = try #require(disks.first { $0.name == "sda" })
        #expect(sda.transport == .sata)
        #expect(sda.model == "QEMU HARDDISK")
        #expect(sda.serial == "QM00001")
        #expect(sda.byID == "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001")
        #expect(sda.rotational)
        let sdb = try #require(disks.first { $0.name == "sdb" })
        #expect(sdb.transport == .usb && sdb.removable)
        #expect(sdb.bootMedium == "holds /run/cloudbios/boot-medium")
        #expect(sdb.mountpoints == ["/run/cloudbios/boot-medium"])
    }

    @Test func tableShowsEveryDisk() throws {
        let (root, roots) = try makeTree(); defer { Files.removeTree(root) }
        let t = Disks.list(roots: roots).table()
        #expect(t.contains("TARGET01"))
        #expect(t.contains("boot medium"))
        #expect(t.split(separator: "\n").count == 4)
    }

    @Test func vpdSerialParses() {
        #expect(Disks.vpdSerial([0, 0x80, 0, 4] + Array("AB12".utf8)) == "AB12")
        #expect(Disks.vpdSerial([0, 0x80]) == nil)
    }

    @Test func mountinfoUnescapes() {
        #expect(MountTable.unescape("/mnt/a\\040b") == "/mnt/a b")
    }
}

/// The boot medium recognised by what it is, not by the path it was found
/// through.
@Suite struct BootMediumIdentityTests {
    let id = BootMediumIdentity(label: "CLOUDBIOS", uuid: "2026-12-07-06-29-00-00", serial: "STICK-1", size: 256 << 20)

    @Test func encodesAndParses() {
        #expect(BootMediumIdentity.parse(id.encoded) == id)
        #expect(id.encoded == "LABEL=CLOUDBIOS\nUUID=2026-12-07-06-29-00-00\nSERIAL=STICK-1\nSIZE=268435456\n")
        #expect(BootMediumIdentity.parse("LABEL=CLOUDBIOS\n") == nil)          // nothing to recognise a disk by
        #expect(BootMediumIdentity.parse("SERIAL=X\n") == nil)                 // a serial alone: not enough
        #expect(BootMediumIdentity.parse("UUID=u\nbogus\nOTHER=1\n") == BootMediumIdentity(uuid: "u"))
        #expect(BootMediumIdentity(label: "a\nb", uuid: "u").encoded == "UUID=u\n")
    }

    @Test func aSecondPathToTheMediumIsRecognised() {
        // the hybrid ISO's volume on the whole disk, seen as another device
        var other = DiskInfo(name: "sdc", path: "/dev/sdc", size: 1 << 30, transport: .scsi)
        other.filesystem = FilesystemInfo(type: "iso9660", label: "CLOUDBIOS", uuid: "2026-12-07-06-29-00-00")
        #expect(id.match(other) == "holds the boot volume (LABEL=CLOUDBIOS, UUID=2026-12-07-06-29-00-00)")
        // on a partition
        var part = DiskInfo(name: "sdd", path: "/dev/sdd", size: 1 << 30, transport: .usb)
        var p = PartitionInfo(number: 1, start: 0, size: 1 << 20)
        p.filesystem = FilesystemInfo(type: "iso9660", label: "CLOUDBIOS", uuid: "2026-12-07-06-29-00-00")
        part.partitions = [p]
        #expect(id.match(part) != nil)
        // the same serial and size, contents unread (a multipath member)
        let twin = DiskInfo(name: "sde", path: "/dev/sde", size: 256 << 20, transport: .usb)
        var t = twin; t.serial = "STICK-1"
        #expect(id.match(t) == "same serial (STICK-1) and size as the boot medium")
    }

    @Test func anotherCloudBIOSMediumOrDiskIsNot() {
        // another build's ISO: same label, another UUID
        var iso = DiskInfo(name: "sr1", path: "/dev/sr1", size: 50 << 20, transport: .sata)
        iso.filesystem = FilesystemInfo(type: "iso9660", label: "CLOUDBIOS", uuid: "2025-01-01-00-00-00-00")
        #expect(id.match(iso) == nil)
        // the same serial on a disk of another size, or the same UUID under another label
        var d = DiskInfo(name: "vdb", path: "/dev/vdb", size: 8 << 30, transport: .virtio)
        d.serial = "STICK-1"
        #expect(id.match(d) == nil)
        d.filesystem = FilesystemInfo(type: "vfat", label: "DATA", uuid: "2026-12-07-06-29-00-00")
        #expect(id.match(d) == nil)
        #expect(id.match(DiskInfo(name: "vdc", path: "/dev/vdc", size: 256 << 20, transport: .virtio)) == nil)
    }

    @Test func listingsMarkTheMediumBehindAnotherName() throws {
        let (root, base) = try FakeSysfsTests().makeTree(); defer { Files.removeTree(root) }
        var roots = base
        roots.bootIdentityFile = root + "/boot-medium.id"
        // PID 1 saw the medium as sdb (mounted); the same medium's serial
        // and size show up as sda too
        try Files.writeAtomically(roots.bootIdentityFile, BootMediumIdentity(label: "CLOUDBIOS", uuid: "x", serial: "QM00001", size: 4 << 30).encoded)
        let disks = Disks.list(roots: roots)
        #expect(disks.first { $0.name == "sda" }?.bootMedium == "same serial (QM00001) and size as the boot medium")
        #expect(disks.first { $0.name == "sdb" }?.bootMedium == "holds /run/cloudbios/boot-medium")
        #expect(disks.first { $0.name == "vda" }?.bootMedium == nil)
    }
}
