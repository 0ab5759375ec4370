import Testing
import Config
import Platform
@testable import VMManager

/// The rules over backups, on plain records: chains, what a deletion must
/// merge or refuse, retention (never what a kept backup builds on), records
/// read back as written, ids and times.
@Suite struct BackupChainTests {
    func rec(_ id: String, _ time: String, parent: String? = nil, vm: String = "web", disks: [(String, Int64)] = [("root", 4 << 30)]) -> BackupRecord {
        BackupRecord(id: id, vm: vm, time: time, kind: parent == nil ? .full : .incremental, parent: parent,
                     spec: .object(["name": .string(vm)]),
                     disks: disks.map { BackupDisk(id: $0.0, virtualSize: $0.1, file: "\($0.0).qcow2", checksum: BackupChecksum(.xxh128, String(repeating: "a", count: 32)), size: 1) })
    }

    func index(_ rs: [BackupRecord]) -> [String: BackupRecord] { Dictionary(uniqueKeysWithValues: rs.map { ($0.id, $0) }) }

    @Test func chainsRunFromTheFullBackupAndBreakOnAMissingLink() {
        let all = index([rec("20260101-000000-0001", "2026-01-01T00:00:00.000Z"),
                         rec("20260102-000000-0002", "2026-01-02T00:00:00.000Z", parent: "20260101-000000-0001"),
                         rec("20260103-000000-0003", "2026-01-03T00:00:00.000Z", parent: "20260102-000000-0002"),
                         rec("20260104-000000-0004", "2026-01-04T00:00:00.000Z", parent: "20260109-000000-0009")])
        #expect(BackupChains.chain("20260103-000000-0003", in: all)?.map(\.id) == ["20260101-000000-0001", "20260102-000000-0002", "20260103-000000-0003"])
        #expect(BackupChains.chain("20260104-000000-0004", in: all) == nil)
        #expect(BackupChains.latest(of: "web", in: all)?.id == "20260104-000000-0004")
        #expect(BackupChains.latest(of: "db", in: all) == nil)
    }

    @Test func aChainThatLoopsIsBroken() {
        let all = index([rec("20260101-000000-0001", "2026-01-01T00:00:00.000Z", parent: "20260102-000000-0002"),
                         rec("20260102-000000-0002", "2026-01-02T00:00:00.000Z", parent: "20260101-000000-0001")])
        #expect(BackupChains.chain("20260101-000000-0001", in: all) == nil)
    }

    @Test func deletionMergesAnIncrementalAndRefusesABase() {
        let f = rec("20260101-000000-0001", "2026-01-01T00:00:00.000Z")
        let i1 = rec("20260102-000000-0002", "2026-01-02T00:00:00.000Z", parent: f.id)
        let i2 = rec("20260103-000000-0003", "2026-01-03T00:00:00.000Z", parent: i1.id)
        let all = index([f, i1, i2])
        #expect(BackupChains.deletePlan(i2.id, in: all) == .remove)
        #expect(BackupChains.deletePlan(i1.id, in: all) == .mergeInto(children: [i2.id], newParent: f.id))
        guard case .refused(let why) = BackupChains.deletePlan(f.id, in: all) else { Issue.record("a base was not refused"); return }
        #expect(why.contains(i1.id))
        // a child with a disk its grandparent lacks cannot take it as its base
        let grown = rec("20260103-000000-0004", "2026-01-03T00:00:00.000Z", parent: i1.id, disks: [("root", 4 << 30), ("data", 1 << 30)])
        guard case .refused = BackupChains.deletePlan(i1.id, in: index([f, i1, grown])) else { Issue.record("a merge across disks was allowed"); return }
    }

    @Test func retentionKeepsLastDailyWeeklyAndWhatTheyBuildOn() {
        // one full per week (Mondays), incrementals every day, over five weeks
        var rs: [BackupRecord] = []
        var parent: String?
        for day in 0..<35 {
            let wall = 1_767_571_200.0 + Double(day) * 86400 + 7200  // 2026-01-05 (a Monday) 02:00 onwards
            let id = BackupRecord.newID(wall: wall)
            let full = day % 7 == 0
            rs.append(rec(id, BackupRecord.timestamp(wall), parent: full ? nil : parent))
            parent = id
        }
        let all = index(rs)
        let kept = BackupChains.retained(rs, keep: BackupKeep(last: 3, daily: 7, weekly: 4), all: all)
        // the newest is kept, and every backup any kept one builds on
        #expect(kept.contains(rs.last!.id))
        for id in kept { #expect(BackupChains.chain(id, in: all).map { $0.allSatisfy { kept.contains($0.id) } } == true) }
        // the last week is kept whole (its incrementals build on its Monday full)
        for r in rs.suffix(7) { #expect(kept.contains(r.id)) }
        // the first week's Sunday is a weekly keeper only if within 4 weeks: it is not (5 weeks back)
        #expect(!kept.contains(rs[6].id))
        #expect(!kept.contains(rs[0].id))
        // weeks 2 to 4 keep their last day's backup, hence their whole chains
        for w in 1...3 { #expect(kept.contains(rs[w * 7 + 6].id) && kept.contains(rs[w * 7].id)) }
        // keep nothing but the newest: only the newest chain
        let minimal = BackupChains.retained(rs, keep: BackupKeep(last: 1, daily: 0, weekly: 0), all: all)
        #expect(minimal == Set(rs.suffix(7).map(\.id)))
    }

    @Test func aRecordReadsBackAsWrittenAndBadOnesAreRefused() throws {
        let r = rec("20260102-000000-0002", "2026-01-02T00:00:00.000Z", parent: "20260101-000000-0001")
        #expect(BackupRecord.decode(try JSONValue.parse(r.json.serialized())) == r)
        #expect(r.summary["parent"]?.stringValue == "20260101-000000-0001" && r.summary["size"]?.intValue == 1)
        // a file name that is not the disk's, a path in an id, an incremental without a parent
        var o = r.json.objectValue!
        o["disks"] = .array([.object(["id": .string("root"), "virtual_size": .int(1), "file": .string("../../etc/passwd"),
                                      "sha256": .string(String(repeating: "a", count: 64)), "size": .int(1)])])
        #expect(BackupRecord.decode(.object(o)) == nil)
        // a checksum of the wrong length for its algorithm, none at all; one made before (SHA-256) reads back
        for bad: JSONValue in [.object(["xxh128": .string(String(repeating: "a", count: 64))]),
                               .object(["sha256": .string(String(repeating: "a", count: 32))]), .object([:])] {
            o = r.json.objectValue!
            var disk = r.disks[0].json.objectValue!
            disk["xxh128"] = nil
            for (k, v) in bad.objectValue! { disk[k] = v }
            o["disks"] = .array([.object(disk)])
            #expect(BackupRecord.decode(.object(o)) == nil)
        }
        o = r.json.objectValue!
        var old = r.disks[0].json.objectValue!
        old["xxh128"] = nil
        old["sha256"] = .string(String(repeating: "b", count: 64))
        o["disks"] = .array([.object(old)])
        #expect(BackupRecord.decode(.object(o))?.disks[0].checksum == BackupChecksum(.sha256, String(repeating: "b", count: 64)))
        o = r.json.objectValue!
        o["parent"] = .string("../x")
        #expect(BackupRecord.decode(.object(o)) == nil)
        o["parent"] = .null
        #expect(BackupRecord.decode(.object(o)) == nil)
    }

    @Test func idsAndTimesAreUTCAndValid() {
        let wall = 1_796_615_999.75  // 2026-12-07T03:59:59.750Z
        #expect(BackupRecord.timestamp(wall) == "2026-12-07T03:59:59.750Z")
        let id = BackupRecord.newID(wall: wall)
        #expect(id.hasPrefix("20261207-035959-") && BackupRecord.checkID(id) == nil)
        for bad in ["", "x", "20261207-023959-", "20261207-023959-XYZW", "2026120-0239590-abcd", "../20261207-023959-abcd"] {
            #expect(BackupRecord.checkID(bad) != nil)
        }
        let a = rec("20260105-000000-0001", "2026-01-05T00:00:00.000Z")  // a Monday
        let b = rec("20260111-000000-0002", "2026-01-11T23:00:00.000Z")  // the Sunday after
        let c = rec("20260112-000000-0003", "2026-01-12T00:00:00.000Z")  // the next Monday
        #expect(a.week == b.week && c.week == a.week + 1)
    }
}
