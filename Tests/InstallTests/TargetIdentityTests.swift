import Testing
@testable import Install
import Disks
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The target is identified again through the descriptor opened for
/// writing, after planning and before the first byte is written. Real loop
/// devices (root) over files in a scratch directory.
@Suite(.serialized) struct TargetIdentityTests {
    let dir: String
    init() throws {
        dir = "/tmp/cb-identity-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
    }

    /// A 64 MiB file filled with `byte`, attached to a new loop device.
    func loop(_ name: String, byte: UInt8) throws -> (file: String, dev: String) {
        let f = "\(dir)/\(name).img"
        _ = try sh("head -c 67108864 /dev/zero | tr '\\000' '\\\(String(byte, radix: 8))' > \(f)")
        let dev = try sh("losetup -f --show \(f)").trimmingCharacters()
        return (f, dev)
    }

    func detach(_ dev: String) { _ = try? sh("losetup -d \(dev)") }
    func sha(_ p: String) throws -> String { try sh("sha256sum \(p) | cut -d' ' -f1") }

    func plan(_ info: DiskInfo) throws -> InstallPlan {
        var i = InstallConfig(); i.wipe = true
        return try Planner.plan(i, disks: [info], target: info, rawImageSize: 1 << 20)
    }

    /// Opens the planned target and writes an image over it, as
    /// `cloudbios install --write-image` does.
    func write(_ plan: InstallPlan, roots: DiscoveryRoots = DiscoveryRoots()) throws {
        let src = dir + "/payload.img"
        if !Files.exists(src) { _ = try sh("head -c 1048576 /dev/urandom > \(src)") }
        let t = try TargetDevice(plan.target, roots: roots)
        try ImageWriter.write(src, to: t, at: 0)
    }

    @Test func aPathRepointedToAnotherDiskIsRefusedAndNothingIsWritten() throws {
        defer { Files.removeTree(dir) }
        let a = try loop("a", byte: 0o252), b = try loop("b", byte: 0o125)
        defer { detach(a.dev); detach(b.dev) }
        // Plan against A through a by-id style link.
        let link = dir + "/by-id-disk"
        _ = try sh("ln -s \(a.dev) \(link)")
        var info = try Disks.inspect(path: a.dev)
        info.path = link
        let p = try plan(info)
        #expect(p.target.devNumber != nil)
        // The link now names B.
        _ = try sh("ln -sfn \(b.dev) \(link)")
        let before = try sha(b.file)
        do {
            try write(p)
            Issue.record("wrote to a disk that was not planned")
        } catch {
            let m = "\(error)"
            #expect(m.contains("the target changed since it was planned") && m.contains("opens device") && m.contains(Files.basenameOf(b.dev)), "\(m)")
        }
        #expect(try sha(b.file) == before)
        // Pointing back at A: written.
        _ = try sh("ln -sfn \(a.dev) \(link)")
        try write(p)
        #expect(try sh("cmp -n 1048576 \(dir)/payload.img \(a.dev) && echo same").contains("same"))
    }

    @Test func aLoopDeviceReattachedToAnotherFileIsRefused() throws {
        defer { Files.removeTree(dir) }
        let a = try loop("a", byte: 0o252)
        var attached = a.dev
        defer { detach(attached) }
        let p = try plan(try Disks.inspect(path: a.dev))
        // Same device node and number, same size, another file behind it.
        let other = dir + "/other.img"
        _ = try sh("head -c 67108864 /dev/zero | tr '\\000' '\\377' > \(other)")
        detach(a.dev)
        attached = try sh("losetup --show \(a.dev) \(other)").trimmingCharacters()
        let before = try sha(other)
        #expect(throws: InstallError.self) { try write(p) }
        do { try write(p) } catch {
            #expect("\(error)".contains("is backed by \(other) now"), "\(error)")
        }
        #expect(try sha(other) == before)
    }

    @Test func aDiskMountedAfterPlanningIsRefused() throws {
        defer { Files.removeTree(dir) }
        let a = try loop("a", byte: 0)
        defer { detach(a.dev) }
        _ = try sh("mkfs.ext4 -q -F -L LATE \(a.dev)")
        let p = try plan(try Disks.inspect(path: a.dev))
        let mnt = dir + "/mnt"
        try Files.makeDirectories(mnt)
        _ = try sh("mount -o ro \(a.dev) \(mnt)")
        defer { _ = try? sh("umount \(mnt)") }
        let before = try sha(a.dev)
        do {
            try write(p)
            Issue.record("wrote to a mounted disk")
        } catch {
            #expect("\(error)".contains("is in use now") && "\(error)".contains(mnt), "\(error)")
        }
        #expect(try sha(a.dev) == before)
    }

    @Test func aDiskThatBecameTheBootMediumIsRefused() throws {
        defer { Files.removeTree(dir) }
        let a = try loop("a", byte: 0o252)
        defer { detach(a.dev) }
        let p = try plan(try Disks.inspect(path: a.dev))
        var roots = DiscoveryRoots()
        roots.bootDeviceFile = dir + "/boot-device"
        try Files.writeAtomically(roots.bootDeviceFile, a.dev + "\n")
        let before = try sha(a.file)
        do {
            try write(p, roots: roots)
            Issue.record("wrote to the boot medium")
        } catch {
            #expect("\(error)".contains("is the boot medium now"), "\(error)")
        }
        #expect(try sha(a.file) == before)
    }

    @Test func anImageFileReplacedAfterPlanningIsRefused() throws {
        defer { Files.removeTree(dir) }
        let img = dir + "/target.img", other = dir + "/other.img"
        _ = try sh("truncate -s 64M \(img) \(other) && printf keep | dd of=\(other) conv=notrunc status=none")
        let p = try plan(try Disks.inspect(path: img))
        _ = try sh("mv \(other) \(img)")
        let before = try sha(img)
        do {
            try write(p)
            Issue.record("wrote to a file that was not planned")
        } catch {
            #expect("\(error)".contains("is another file now"), "\(error)")
        }
        #expect(try sha(img) == before)
    }
}

extension Files {
    static func basenameOf(_ p: String) -> String { String(p.split(separator: "/").last ?? "") }
}

/// Holes in the image are skipped, not written, and still read back as
/// zeros from a target that held 0xFF everywhere.
@Suite(.serialized) struct ImageWriterHoleTests {
    func check(onDevice: Bool) throws {
        let dir = "/tmp/cb-holes-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        // 40 MiB + 1 KiB image: data at 0-1 MiB, 9 MiB (4 KiB), 20-22 MiB,
        // an explicit all-zero 2 MiB run at 30 MiB, and data in the odd tail.
        let src = dir + "/src.img"
        _ = try sh("truncate -s 41944064 \(src) && dd if=/dev/urandom of=\(src) bs=1M count=1 conv=notrunc status=none"
                   + " && dd if=/dev/urandom of=\(src) bs=4k seek=2304 count=1 conv=notrunc status=none"
                   + " && dd if=/dev/urandom of=\(src) bs=1M seek=20 count=2 conv=notrunc status=none"
                   + " && dd if=/dev/zero of=\(src) bs=1M seek=30 count=2 conv=notrunc status=none"
                   + " && dd if=/dev/urandom of=\(src) bs=512 seek=81920 count=2 conv=notrunc status=none")
        let backing = dir + "/target.img"
        _ = try sh("head -c 67108864 /dev/zero | tr '\\000' '\\377' > \(backing)")
        var dev = backing
        if onDevice { dev = try sh("losetup -f --show \(backing)").trimmingCharacters() }
        defer { if onDevice { _ = try? sh("losetup -d \(dev)") } }
        var i = InstallConfig(); i.wipe = true
        let info = try Disks.inspect(path: dev)
        let plan = try Planner.plan(i, disks: [info], target: info, rawImageSize: 41944064)
        let t = try TargetDevice(plan.target)
        #expect(t.isBlockDevice == onDevice)
        let stats = try ImageWriter.write(src, to: t, at: 0)
        // Only the data was written; the rest was zeroed without writing it.
        #expect(stats.dataBytes <= 4 << 20, "\(stats)")
        #expect(stats.zeroedBytes >= 36 << 20, "\(stats)")
        // Read back through the target: the image byte for byte, so every
        // hole reads as zeros where 0xFF was ...
        _ = try sh("sync")
        #expect(try sh("cmp -n 41944064 \(src) \(dev) && echo same").contains("same"))
        let holes: [(Int, Int)] = [(1 << 20, 8 << 20), (10 << 20, 10 << 20), (22 << 20, 8 << 20), (30 << 20, 2 << 20), (32 << 20, 8 << 20)]
        /// Bytes read and how many of them are not `byte`, for a range of the target.
        func count(_ off: Int, _ len: Int, not byte: UInt8) throws -> String {
            try sh("python3 -c 'import sys; f = open(sys.argv[1], \"rb\"); f.seek(\(off)); b = f.read(\(len)); print(len(b), len(b) - b.count(\(byte)))' \(dev)").trimmingCharacters()
        }
        for (off, len) in holes {
            #expect(try count(off, len, not: 0) == "\(len) 0", "the hole at \(off >> 20) MiB")
        }
        // ... and past the image the target is untouched.
        #expect(try count(41944064, (64 << 20) - 41944064, not: 0xff) == "\((64 << 20) - 41944064) 0")
    }

    @Test func onABlockDevice() throws { try check(onDevice: true) }
    @Test func onAnImageFile() throws { try check(onDevice: false) }

    /// An image placed so that its bytes and the device's 4 KiB blocks do
    /// not line up (a deferred head of 1000 bytes at offset 3096): the
    /// direct writes bounce through the aligned buffer and the target
    /// still holds the image byte for byte.
    @Test func misalignedOnABlockDevice() throws {
        let dir = "/tmp/cb-holes-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
        defer { Files.removeTree(dir) }
        let src = dir + "/src.img"
        _ = try sh("truncate -s 20M \(src) && dd if=/dev/urandom of=\(src) bs=1M count=10 conv=notrunc status=none"
                   + " && dd if=/dev/urandom of=\(src) bs=1M seek=14 count=1 conv=notrunc status=none")
        let backing = dir + "/target.img"
        _ = try sh("head -c 33554432 /dev/zero | tr '\\000' '\\377' > \(backing)")
        let dev = try sh("losetup -f --show \(backing)").trimmingCharacters()
        defer { _ = try? sh("losetup -d \(dev)") }
        var i = InstallConfig(); i.wipe = true
        let info = try Disks.inspect(path: dev)
        let plan = try Planner.plan(i, disks: [info], target: info, rawImageSize: 20 << 20)
        let t = try TargetDevice(plan.target)
        try ImageWriter.write(src, to: t, at: 3096, deferHead: 1000)
        _ = try sh("sync")
        #expect(try sh("cmp -n \(20 << 20) \(src) \(dev) --ignore-initial=0:3096 && echo same").contains("same"))
        #expect(try sh("head -c 3096 \(dev) | tr -d '\\377' | wc -c").trimmingCharacters() == "0")
    }
}
