import Testing
@testable import Install
import Disks
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Data disks (`cloudbios disks init`): the installer's refusals on fake
/// disk tables, and real ones made on disk image files.
@Suite struct DataDiskPlanTests {
    @Test func aBlankDiskIsPlannedAsOneCBDataPartitionFillingIt() throws {
        let d = disk("vdb", size: 8 << 30)
        let plan = try DataDisk.plan(d, disks: [d], wipe: false)
        #expect(plan.partition.label == "CB-DATA" && plan.partition.filesystem == "ext4")
        #expect(plan.partition.start == 1 << 20)
        #expect(plan.partition.end == (8 << 30) - (1 << 20))
        #expect(plan.destroys.isEmpty)
    }

    @Test func theBootMediumIsNeverMadeADataDiskEvenWithWipe() {
        let bm = bootMedium(disk("sda"))
        #expect(throws: DataDiskError.plan(.bootMedium(bm.label))) { try DataDisk.plan(bm, disks: [bm], wipe: true) }
        // the same disk seen through a loop device over it is the boot medium too
        var loop = disk("loop0")
        loop.backingFile = "/dev/sda"
        #expect(throws: DataDiskError.plan(.bootMedium(bm.label))) { try DataDisk.plan(loop, disks: [bm, loop], wipe: true) }
        #expect(DataDiskError.plan(.bootMedium(bm.label)).kind == .conflict)
    }

    @Test func aDiskHoldingDataIsRefusedWithoutWipeAndSaysWhatItHolds() throws {
        let d = withData(disk("vdb"))
        do {
            _ = try DataDisk.plan(d, disks: [d], wipe: false)
            Issue.record("planned a disk holding data without wipe")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.description.contains("precious"), "\(error)")
            #expect(error.description.contains("without wipe"))
        }
        let plan = try DataDisk.plan(d, disks: [d], wipe: true)
        #expect(plan.destroys.contains { $0.contains("precious") })
    }

    @Test func unrecognisedDataCountsAsData() throws {
        let d = disk("vdb")
        #expect(throws: DataDiskError.self) { try DataDisk.plan(d, disks: [d], wipe: false, unknownData: true) }
        #expect(try DataDisk.plan(d, disks: [d], wipe: true, unknownData: true).destroys.count == 1)
    }

    @Test func mountedReadOnlyAndSmallDisksAreRefused() {
        var m = withData(disk("vdb"))
        m.partitions[0].mountpoints = ["/mnt/x"]
        #expect(throws: DataDiskError.plan(.inUse(disk: m.label, mountpoints: ["/mnt/x"]))) { try DataDisk.plan(m, disks: [m], wipe: true) }
        var ro = disk("vdc")
        ro.readOnly = true
        #expect(throws: DataDiskError.plan(.readOnly(ro.label))) { try DataDisk.plan(ro, disks: [ro], wipe: true) }
        let small = disk("vdd", size: 64 << 20)
        #expect(throws: DataDiskError.tooSmall(disk: small.label, size: 64 << 20)) { try DataDisk.plan(small, disks: [small], wipe: true) }
        #expect(DataDiskError.tooSmall(disk: small.label, size: 1).kind == .invalid)
    }
}

/// Real data disks on image files: libparted and mke2fs as the installer runs them.
@Suite(.serialized) struct DataDiskImageTests {
    @Test func anImageFileBecomesAGPTDiskWithOneCBDataExt4Partition() throws {
        let dir = "/tmp/cb-datadisk-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        let img = dir + "/data.img"
        // an old filesystem on it first: refused without wipe, gone with it
        _ = try sh("truncate -s 600M \(img) && mke2fs -q -F -t ext4 -L OLDSTUFF \(img)")
        let before = try Disks.inspect(path: img)
        #expect(before.filesystem?.label == "OLDSTUFF")
        #expect(throws: DataDiskError.self) { try DataDisk.plan(before, disks: [], wipe: false, unknownData: DataDisk.firstMiBHoldsData(img) ?? false) }
        #expect(try Disks.inspect(path: img).filesystem?.label == "OLDSTUFF")  // untouched
        var steps: [Int] = []
        let out = try DataDisk.make(try DataDisk.plan(before, disks: [], wipe: true)) { p, _ in steps.append(p) }
        #expect(out == img)
        #expect(steps == steps.sorted() && !steps.isEmpty)
        let after = try Disks.inspect(path: img)
        #expect(after.partitionTable == "gpt")
        #expect(after.filesystem == nil)
        #expect(after.partitions.count == 1)
        let p = try #require(after.partitions.first)
        #expect(p.filesystem?.type == "ext4" && p.filesystem?.label == "CB-DATA")
        #expect(p.start == 1 << 20 && p.size == (600 << 20) - (2 << 20))
        // the filesystem is clean and fills the partition
        _ = try sh("PATH=$PATH:/sbin:/usr/sbin e2fsck -fn '\(img)?offset=\(p.start)' >/dev/null 2>&1")
        let blocks = try sh("PATH=$PATH:/sbin:/usr/sbin dumpe2fs -h '\(img)?offset=\(p.start)' 2>/dev/null | sed -n 's/^Block count: *//p'")
        #expect(Int64(blocks.split(separator: "\n").first.map(String.init) ?? "").map { $0 * 4096 } == p.size)
    }

    @Test func aBlankImageIsMadeWithoutWipe() throws {
        let dir = "/tmp/cb-datadisk-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        let img = dir + "/blank.img"
        _ = try sh("truncate -s 300M \(img)")
        #expect(DataDisk.firstMiBHoldsData(img) == false)
        let d = try Disks.inspect(path: img)
        try DataDisk.make(try DataDisk.plan(d, disks: [], wipe: false, unknownData: false))
        #expect(try Disks.inspect(path: img).partitions.first?.filesystem?.label == "CB-DATA")
        #expect(DataDisk.firstMiBHoldsData(img) == true)
    }
}
