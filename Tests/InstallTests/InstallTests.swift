import Testing
@testable import Install
import Disks
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

// MARK: fake disk tables

func disk(_ name: String, size: Int64 = 16 << 30, serial: String? = nil, model: String? = nil,
          transport: Transport = .virtio, rotational: Bool = false) -> DiskInfo {
    var d = DiskInfo(name: name, path: "/dev/\(name)", size: size, transport: transport)
    d.serial = serial; d.model = model; d.rotational = rotational
    d.byID = Disks.synthesizedByID(d)
    return d
}

func withData(_ d: DiskInfo) -> DiskInfo {
    var d = d
    d.partitionTable = "gpt"
    var p = PartitionInfo(number: 1, start: 1 << 20, size: 1 << 30)
    p.filesystem = FilesystemInfo(type: "ext4", label: "precious", uuid: "u-1")
    d.partitions = [p]
    return d
}

func bootMedium(_ d: DiskInfo) -> DiskInfo { var d = d; d.bootMedium = "iso9660 volume labelled CLOUDBIOS"; return d }

func install(_ build: (inout DiskSelector) -> Void, wipe: Bool = false) -> InstallConfig {
    var i = InstallConfig()
    build(&i.disk)
    i.wipe = wipe
    return i
}

@Suite struct SelectorTests {
    let target = disk("vda", serial: "TARGET01", model: "QEMU HARDDISK")
    let decoy = disk("vdb", serial: "DECOY01", model: "Samsung SSD 870", rotational: true)

    @Test func serialGlob() {
        var s = DiskSelector(); s.serial = "TARGET*"
        #expect(s.match(target) == ["serial TARGET01 matches \"TARGET*\""])
        #expect(s.match(decoy) == nil)
    }

    @Test func modelGlobWithClass() {
        var s = DiskSelector(); s.model = "Samsung SSD 8[5-7]0"
        #expect(s.match(decoy) != nil)
        #expect(s.match(target) == nil)
    }

    static let sizeCases: [(String, Int64, Bool)] = [
        (">= 8G", Int64(8) << 30, true), (">= 8G", (Int64(8) << 30) - 1, false), ("> 8G", Int64(8) << 30, false),
        ("<= 1T", Int64(1) << 40, true), ("< 16G", Int64(16) << 30, false), ("== 2G", Int64(2) << 30, true),
    ]
    @Test(arguments: sizeCases)
    func sizeComparisons(_ expr: String, _ size: Int64, _ expected: Bool) throws {
        let op = try #require(SizeConstraint.Op.allCases.sorted { $0.rawValue.count > $1.rawValue.count }.first { expr.hasPrefix($0.rawValue) })
        let bytes = try #require(Sizes.parse(String(expr.dropFirst(op.rawValue.count))))
        var s = DiskSelector(); s.size = SizeConstraint(op: op, bytes: bytes)
        #expect((s.match(disk("x", size: size)) != nil) == expected)
    }

    @Test func ssdAndByIDAndPath() {
        var s = DiskSelector(); s.ssd = true
        #expect(s.match(target) != nil && s.match(decoy) == nil)
        s = DiskSelector(); s.byID = "virtio-TARGET*"
        #expect(s.match(target) != nil && s.match(decoy) == nil)
        s = DiskSelector(); s.byID = "/dev/disk/by-id/virtio-DECOY01"
        #expect(s.match(decoy) != nil)
        s = DiskSelector(); s.path = "/dev/vda"
        #expect(s.match(target) != nil && s.match(decoy) == nil)
    }

    @Test func everyCriterionMustHold() {
        var s = DiskSelector(); s.serial = "TARGET*"; s.ssd = false
        #expect(s.match(target) == nil)
    }
}

@Suite struct PlannerTests {
    let target = disk("vda", serial: "TARGET01")
    let decoy = withData(disk("vdb", serial: "DECOY01"))

    @Test func picksTheOneMatchAndSaysWhy() throws {
        let plan = try Planner.plan(install { $0.serial = "TARGET*" }, disks: [decoy, target])
        #expect(plan.target.path == "/dev/vda")
        #expect(plan.reasons == ["serial TARGET01 matches \"TARGET*\""])
        #expect(plan.destroys.isEmpty)
        #expect(plan.partitions.map(\.role) == [.biosBoot, .esp, .system, .config, .data])
        #expect(plan.phases.map(\.id) == InstallPhase.ID.allCases)
        #expect(plan.json["target"]?.stringValue == "/dev/vda")
        #expect(plan.text.contains("blank"))
    }

    @Test func ambiguousSelectorListsEveryMatch() {
        let a = disk("vda", serial: "TARGET01"), b = disk("vdc", serial: "TARGET02")
        #expect {
            try Planner.plan(install { $0.serial = "TARGET*" }, disks: [a, b, decoy])
        } throws: { e in
            guard case .ambiguous(_, let m) = e as? PlanError else { return false }
            let text = (e as! PlanError).description
            return m.count == 2 && text.contains("/dev/vda") && text.contains("/dev/vdc") && !text.contains("/dev/vdb")
        }
    }

    @Test func nonEmptyDiskNeedsWipe() throws {
        #expect {
            try Planner.plan(install { $0.serial = "DECOY*" }, disks: [decoy, target])
        } throws: { e in
            guard case .notEmpty(_, let contents) = e as? PlanError else { return false }
            return contents.contains { $0.contains("precious") }
        }
        let plan = try Planner.plan(install({ $0.serial = "DECOY*" }, wipe: true), disks: [decoy, target])
        #expect(plan.target.path == "/dev/vdb")
        #expect(plan.destroys.contains { $0.contains("ext4 \"precious\"") })
    }

    @Test func bootMediumIsNeverATarget() throws {
        let usb = bootMedium(disk("sdb", serial: "TARGET99", transport: .usb))
        // The only match is the boot medium: refused.
        #expect(throws: PlanError.self) { try Planner.plan(install { $0.serial = "TARGET99" }, disks: [usb, target]) }
        // Matching both: the boot medium is excluded (and said so), the other chosen.
        let plan = try Planner.plan(install({ $0.size = SizeConstraint(op: .ge, bytes: 1 << 30) }), disks: [usb, target])
        #expect(plan.target.path == "/dev/vda")
        #expect(plan.excluded.count == 1 && plan.excluded[0].contains("boot medium"))
        // Named with --target: refused too, even with wipe.
        #expect {
            try Planner.plan(install({ $0.serial = "x" }, wipe: true), disks: [usb, target], target: usb)
        } throws: { e in
            if case .bootMedium = e as? PlanError { return true }
            return false
        }
    }

    @Test func mountedDiskIsRefused() {
        var d = disk("vda", serial: "TARGET01")
        d.mountpoints = ["/"]
        #expect {
            try Planner.plan(install({ $0.serial = "TARGET*" }, wipe: true), disks: [d])
        } throws: { e in
            if case .inUse = e as? PlanError { return true }
            return false
        }
    }

    @Test func tooSmallAndNoMatchAndEmptySelector() {
        #expect(throws: PlanError.self) { try Planner.plan(install { $0.serial = "T" }, disks: [disk("a", size: 512 << 20, serial: "T")]) }
        #expect {
            try Planner.plan(install { $0.serial = "NOPE*" }, disks: [target, decoy])
        } throws: { e in
            let s = (e as! PlanError).description
            return s.contains("no disk matches") && s.contains("/dev/vda") && s.contains("/dev/vdb")
        }
        #expect(throws: PlanError.emptySelector) { try Planner.plan(InstallConfig(), disks: [target]) }
    }

    @Test func interruptedInstallMayBeRedoneWithoutWipe() throws {
        var d = disk("vda", serial: "TARGET01")
        d.partitionTable = "gpt"
        d.partitions = Layout.partitions(diskSize: d.size)!.map { p in
            var pi = PartitionInfo(number: p.number, start: p.start, size: p.size); pi.name = p.name; return pi
        }
        #expect(d.isInterruptedInstall)
        _ = try Planner.plan(install { $0.serial = "TARGET*" }, disks: [d])
        // A finished install (system filesystem present) needs wipe.
        d.partitions[2].filesystem = FilesystemInfo(type: "ext4", label: Layout.systemLabel)
        #expect(!d.isInterruptedInstall)
        #expect(throws: PlanError.self) { try Planner.plan(install { $0.serial = "TARGET*" }, disks: [d]) }
    }

    @Test func layoutIsAlignedAndFillsTheDisk() throws {
        let size: Int64 = 2 << 30
        let parts = try #require(Layout.partitions(diskSize: size))
        for p in parts { #expect(p.start % (1 << 20) == 0 && p.size % (1 << 20) == 0) }
        for (a, b) in zip(parts, parts.dropFirst()) { #expect(a.end == b.start) }
        #expect(parts.last!.end == size - (1 << 20))
        #expect(Layout.partitions(diskSize: Layout.minimumDiskSize - 1) == nil)
    }
}

@Suite struct GrubTests {
    @Test func menuHasOneEntryPerVMPlusHostAndRescue() {
        let cfg = GrubMenu.render(template: GrubMenu.builtinTemplate, systemUUID: "abcd", vms: ["web", "tiny"], display: "tiny")
        #expect(cfg.contains("search --no-floppy --fs-uuid --set=root abcd"))
        #expect(cfg.contains("set default=\"vm-tiny\""))
        #expect(cfg.contains("cloudbios.display=web"))
        #expect(cfg.contains("cloudbios.display=tiny"))
        #expect(cfg.contains("cloudbios.display=none"))
        #expect(cfg.contains("cloudbios.rescue=1"))
        #expect(cfg.components("menuentry ") == 4)
        #expect(!cfg.contains("@"))
        #expect(cfg.contains("cloudbios.config=LABEL=CB-CONFIG"))
    }

    @Test func repositoryTemplateRendersToo() throws {
        let path = "images/grub-disk.cfg.in"
        guard let t = try? Files.readString(path) else { return }
        let cfg = GrubMenu.render(template: t, systemUUID: "u", vms: ["a"], display: nil)
        #expect(cfg.contains("cloudbios.display=a"))
        #expect(cfg.contains("set default=\"host\""))
        let code = cfg.split(separator: "\n").filter { !$0.drop(while: { $0 == " " }).hasPrefix("#") }
        #expect(!code.contains { $0.contains("@") })
        // braces balance: comments never swallow half an entry
        #expect(code.reduce(0) { $0 + $1.filter { $0 == "{" }.count - $1.filter { $0 == "}" }.count } == 0)
        #expect(code.filter { $0.hasPrefix("menuentry ") }.count == 3)
    }

    @Test func mbrKeepsThePartitionTableAndPointsAtCore() throws {
        var boot = [UInt8](repeating: 0xEB, count: 512)
        boot[0x1fe] = 0x55; boot[0x1ff] = 0xaa
        var existing = [UInt8](repeating: 0, count: 512)
        for i in 0x1b8..<0x1fe { existing[i] = UInt8(i & 0xff) }
        let m = try BIOSBoot.mbr(bootImage: boot, existing: existing, coreSector: 2048)
        #expect(Array(m[0x1b8..<0x1fe]) == Array(existing[0x1b8..<0x1fe]))
        #expect(m[0x5c] == 0x00 && m[0x5d] == 0x08 && m[0x5e] == 0)
        #expect(m[0x64] == 0xff && m[0x66] == 0x90 && m[0x67] == 0x90)
        #expect(m[0] == 0xEB && m[0x1fe] == 0x55 && m[0x1ff] == 0xaa)
    }

    @Test func coreBlocklistPointsAtTheRest() throws {
        var core = [UInt8](repeating: 0, count: 512 * 3 + 100)
        core[512 - 12] = 2                      // default start
        core[512 - 4] = 3                       // len = 3 sectors after the first
        core[512 - 2] = 0x20; core[512 - 1] = 0x08
        let c = try BIOSBoot.patchCore(core, coreSector: 2048)
        #expect(c.count == 512 * 4)
        #expect(c[512 - 12] == 0x01 && c[512 - 11] == 0x08)  // 2049
        core[512 - 4] = 9
        #expect(throws: InstallError.self) { try BIOSBoot.patchCore(core, coreSector: 2048) }
    }
}

extension String {
    func components(_ sep: String) -> Int {
        var n = 0
        var rest = Substring(self)
        while let r = rest.range(of: sep) { n += 1; rest = rest[r.upperBound...] }
        return n
    }
}

@Suite struct WebhookTests {
    @Test func parsesURLs() {
        let w = Webhook("http://127.0.0.1:8080/hook?x=1")
        #expect(w?.host == "127.0.0.1" && w?.port == 8080 && w?.path == "/hook?x=1")
        #expect(Webhook("http://example.test")?.port == 80)
        #expect(Webhook("http://[::1]:9/")?.host == "::1")
        #expect(Webhook("ftp://x/") == nil)
    }

    @Test func postsJSONAndRetries() throws {
        // A one-shot server that drops the first connection and answers the second.
        let ls = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var one: Int32 = 1
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(ls, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(ls, 4)
        var bound = sockaddr_in(); var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(ls, $0, &len) } }
        let port = UInt16(bigEndian: bound.sin_port)
        let received = ReceivedBox()
        Background.run {
            let c1 = accept(ls, nil, nil); close(c1)
            let c2 = accept(ls, nil, nil)
            var buf = [UInt8](repeating: 0, count: 4096)
            var got: [UInt8] = []
            while !String(decoding: got, as: UTF8.self).contains("}") {
                let n = read(c2, &buf, buf.count); if n <= 0 { break }; got += buf[0..<n]
            }
            received.set(String(decoding: got, as: UTF8.self))
            let ans = Array("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".utf8)
            _ = write(c2, ans, ans.count); close(c2); close(ls)
        }
        let w = try #require(Webhook("http://127.0.0.1:\(port)/done"))
        let status = w.post(.object(["event": .string("succeeded")]))
        #expect(status == 204)
        let req = received.get()
        #expect(req.hasPrefix("POST /done HTTP/1.1"))
        #expect(req.contains("{\"event\":\"succeeded\"}"))
    }
}

final class ReceivedBox: @unchecked Sendable {
    var s = ""
    let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(m, nil) }
    func set(_ v: String) { pthread_mutex_lock(m); s = v; pthread_mutex_unlock(m) }
    func get() -> String { pthread_mutex_lock(m); defer { pthread_mutex_unlock(m) }; return s }
}
