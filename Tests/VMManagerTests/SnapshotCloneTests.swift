import Testing
import Config
import Platform
@testable import VMManager

/// The snapshot tree (parents, current, reparenting, what is kept), the
/// hardware a RAM snapshot needs, and how a clone's definition follows from
/// its source's and the overrides. Pure: no QEMU.
@Suite struct SnapshotTreeTests {
    func record(_ name: String, _ c: SnapshotRecord.Consistency = .stopped) -> SnapshotRecord {
        SnapshotRecord(name: name, time: "2026-01-01T00:00:00Z", consistency: c, disks: ["root"])
    }

    @Test func takingMakesEachSnapshotTheChildOfTheCurrentOne() {
        var t = SnapshotTree()
        t.add(record("a"))
        t.add(record("b"))
        t.revert(to: "a")
        t.add(record("c"))
        #expect(t.record("a")?.parent == nil)
        #expect(t.record("b")?.parent == "a")
        #expect(t.record("c")?.parent == "a")
        #expect(t.current == "c")
        #expect(t.children(of: "a") == ["b", "c"])
    }

    @Test func deletingReparentsTheChildrenAndMovesCurrentUp() {
        var t = SnapshotTree()
        for n in ["a", "b", "c"] { t.add(record(n)) }   // a <- b <- c
        t.revert(to: "b")
        t.add(record("d"))                              // a <- b <- {c, d}
        t.remove("b")
        #expect(t.record("c")?.parent == "a")
        #expect(t.record("d")?.parent == "a")
        #expect(t.current == "d")
        t.remove("d")
        #expect(t.current == "a")
        t.remove("a")
        #expect(t.record("c")?.parent == nil)
        #expect(t.current == nil)
        #expect(t.snapshots.map(\.name) == ["c"])
    }

    @Test func aRevertToAnUnknownSnapshotChangesNothing() {
        var t = SnapshotTree()
        t.add(record("a"))
        t.revert(to: "zz")
        t.remove("zz")
        #expect(t.current == "a" && t.snapshots.count == 1)
    }

    @Test func theStoredTreeReadsBackTheSameAndDropsWhatIsBroken() throws {
        var t = SnapshotTree()
        var spec = VMSpec(name: "web")
        spec.disks = [DiskSpec(id: "root", size: 1 << 30)]
        var a = record("a", .memory)
        a.vmstateDisk = "root"
        a.spec = spec
        t.add(a)
        t.add(record("b", .quiesced))
        let back = SnapshotTree(stored: try JSONValue.parse(t.stored.bytes))
        #expect(back == t)
        #expect(back.record("a")?.memory == true && back.record("b")?.quiesced == true)
        // a hand-edited file: bad names, a dangling parent and current are dropped
        let bad = #"{"current": "gone", "snapshots": [{"name": "../x", "time": "t", "consistency": "stopped", "disks": []},"# +
            #"{"name": "ok", "time": "t", "consistency": "stopped", "disks": ["root", "../etc"], "parent": "gone"}]}"#
        let read = SnapshotTree(stored: try JSONValue.parse(Array(bad.utf8)))
        #expect(read.snapshots.map(\.name) == ["ok"])
        #expect(read.record("ok")?.parent == nil && read.record("ok")?.disks == ["root"] && read.current == nil)
    }

    @Test func theListMarksTheCurrentSnapshot() {
        var t = SnapshotTree()
        t.add(record("a"))
        t.add(record("b"))
        t.revert(to: "a")
        let list = t.json.arrayValue ?? []
        #expect(list.map { $0["current"]?.boolValue } == [true, false])
        #expect(list[1]["parent"]?.stringValue == "a" && list[0]["parent"] == .null)
    }

    @Test func aRAMSnapshotNeedsTheSameHardware() {
        var then = VMSpec(name: "web")
        then.disks = [DiskSpec(id: "root", size: 1 << 30)]
        var now = then
        #expect(SnapshotTree.hardwareChange(from: then, to: now) == nil)
        now.autostart = true
        now.forwards = [PortForward(host: 2222, guest: 22)]
        #expect(SnapshotTree.hardwareChange(from: then, to: now) == nil)
        now.memory = 2048
        #expect(SnapshotTree.hardwareChange(from: then, to: now)?.contains("memory 512 MiB → 2048 MiB") == true)
        now = then
        now.disks.append(DiskSpec(id: "data", size: 1 << 30))
        #expect(SnapshotTree.hardwareChange(from: then, to: now)?.contains("disks") == true)
    }

    @Test(arguments: ["s1", "Before-upgrade", "v1.2_3", String(repeating: "a", count: 40)])
    func snapshotNamesAccepted(_ n: String) { #expect(Names.checkSnapshot(n) == nil) }

    @Test(arguments: ["", "1", "12abc", "-x", ".x", "a b", "a/b", "a,b", "../x", "é", String(repeating: "a", count: 41)])
    func snapshotNamesRefused(_ n: String) { #expect(Names.checkSnapshot(n) != nil) }
}

@Suite struct CloneRecipeTests {
    var template: VMSpec {
        var s = VMSpec(name: "tmpl")
        s.memory = 1024
        s.disks = [DiskSpec(id: "root", image: "debian-12", size: 4 << 30)]
        var c = CloudInitSpec()
        c.hostname = "tmpl-host"
        c.user = "admin"
        c.sshAuthorizedKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeadBeefDeadBeefDeadBeefDeadBeefDeadBeefDead e2e"]
        s.cloudInit = c
        s.forwards = [PortForward(host: 2222, guest: 22)]
        s.template = true
        s.autostart = true
        s.display = true
        return s
    }

    @Test func aCloneIsTheSourceUnderANewNameWithItsOwnHostnameAndNoPorts() throws {
        let (spec, linked) = try CloneRecipe.derive(source: template, body: ["name": .string("web1")])
        #expect(linked)
        #expect(spec.name == "web1" && spec.memory == 1024 && spec.disks == template.disks)
        #expect(spec.cloudInit?.hostname == nil)   // the name, then
        #expect(spec.cloudInit?.user == "admin" && spec.cloudInit?.sshAuthorizedKeys == template.cloudInit?.sshAuthorizedKeys)
        #expect(spec.forwards.isEmpty && !spec.template && !spec.autostart && !spec.display)
        // a new instance: the seed's id and the MAC follow the name
        let a = CloudInitSeed(vm: template, mac: "52:54:00:00:00:01"), b = CloudInitSeed(vm: spec, mac: "52:54:00:00:00:01")
        #expect(a.instanceID != b.instanceID)
        #expect(b.metaData.contains("local-hostname: web1"))
    }

    @Test func overridesWinAndCloudInitIsMergedKeyByKey() throws {
        let body: [String: JSONValue] = [
            "name": .string("web2"), "linked": .bool(false), "memory": .int(2048),
            "cloud_init": .object(["hostname": .string("shop")]),
            "forwards": .array([.object(["host": .int(2223), "guest": .int(22)])]), "template": .bool(true),
        ]
        let (spec, linked) = try CloneRecipe.derive(source: template, body: body)
        #expect(!linked && spec.memory == 2048 && spec.template)
        #expect(spec.cloudInit?.hostname == "shop" && spec.cloudInit?.user == "admin")
        #expect(spec.forwards == [PortForward(host: 2223, guest: 22)])
    }

    @Test func badBodiesAreRefusedWithTheirKind() {
        func kind(_ body: [String: JSONValue]) -> ErrorKind? {
            do { _ = try CloneRecipe.derive(source: template, body: body); return nil } catch let e as any DomainError { return e.kind } catch { return .invalid }
        }
        #expect(kind([:]) == .badRequest)
        #expect(kind(["name": .string("Bad_Name")]) == .badRequest)
        #expect(kind(["name": .string("ok"), "linked": .string("yes")]) == .badRequest)
        #expect(kind(["name": .string("ok"), "disks": .array([])]) == .invalid)
        #expect(kind(["name": .string("ok"), "memroy": .int(1)]) == .invalid)
        #expect(kind(["name": .string("ok"), "memory": .int(1)]) == .invalid)
    }
}

/// Templates and linked clones against a real state dir and qemu-img
/// (no guest runs).
@Suite struct TemplateTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        return try VMManager(options: o)
    }

    func wait(_ m: VMManager, _ t: TaskInfo) async -> TaskInfo {
        for _ in 0..<600 {
            if let x = m.tasks.task(t.id), x.state == .succeeded || x.state == .failed { return x }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        return m.tasks.task(t.id)!
    }

    @Test func aTemplateNeverStartsAndKeepsItsLinkedClones() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        var t = VMSpec(name: "tmpl")
        t.network = .none
        t.disks = [DiskSpec(id: "root", size: 16 << 20)]
        t.template = true
        t.autostart = true
        _ = try await m.create(t)
        await #expect(throws: VMError.conflict(VMManager.templateStartMessage("tmpl"))) { _ = try await m.start("tmpl") }
        #expect(await m.autostart().isEmpty)
        #expect(try await m.vm("tmpl").state == .stopped)
        // its disk is made for the clone although it never started
        let task = try await m.startClone("tmpl", body: ["name": .string("c1")])
        #expect(await wait(m, task).state == .succeeded)
        #expect(await m.linkedClones(of: "tmpl") == ["c1"])
        #expect(Files.exists(m.paths("tmpl").disk("root")) && Files.exists(m.paths("c1").disk("root")))
        await #expect(throws: VMError.self) { try await m.delete("tmpl") }
        var untemplated = t
        untemplated.template = false
        await #expect(throws: VMError.self) { _ = try await m.update("tmpl", untemplated) }
        await #expect(throws: VMError.self) { _ = try await m.startSnapshot("tmpl", snapshot: "s1", memory: false) }
        // once the clone goes, so do the refusals
        try await m.delete("c1")
        #expect(await m.linkedClones(of: "tmpl").isEmpty)
        _ = try await m.update("tmpl", untemplated)
        try await m.delete("tmpl")
    }

    @Test func aLinkedCloneOfANonTemplateIsRefusedAndLeavesNothing() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        var s = VMSpec(name: "plain")
        s.network = .none
        _ = try await m.create(s)
        await #expect(throws: VMError.self) { _ = try await m.startClone("plain", body: ["name": .string("c2")]) }
        #expect(!Files.exists(m.paths("c2").diskDir))
        #expect((await m.list()).map(\.spec.name) == ["plain"])
    }
}
