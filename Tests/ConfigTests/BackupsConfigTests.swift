import Testing
@testable import Config

/// `backups:` and a VM's `backup: true`: decoded strictly, refused with line
/// and column.
@Suite struct BackupsConfigTests {
    @Test func decodesTargetScheduleKeepAndTheVMsOptIn() throws {
        let cfg = try ConfigLoader.load(path: "c.yaml", text: """
            version: 1
            backups:
              target: /srv/backups
              schedule: "02:30"
              keep: {last: 5, daily: 14, weekly: 0}
            vms:
              - {name: web, backup: true}
              - {name: db}
            """)
        #expect(cfg.backups.target == "/srv/backups" && cfg.backups.scheduleText == "02:30")
        #expect(cfg.backups.schedule?.hour == 2 && cfg.backups.schedule?.minute == 30)
        #expect(cfg.backups.keepLast == 5 && cfg.backups.keepDaily == 14 && cfg.backups.keepWeekly == 0)
        #expect(cfg.vms.map(\.backup) == [true, false])
        // only a VM that opts in says so in its JSON (definitions of others are unchanged)
        #expect(cfg.vms[0].json["backup"] == .bool(true) && cfg.vms[1].json["backup"] == nil)
        let label = try ConfigLoader.load(path: "c.yaml", text: "version: 1\nbackups: {target: LABEL=CB-BACKUP}\n")
        #expect(label.backups.target == "LABEL=CB-BACKUP" && label.backups.schedule == nil)
        #expect(try ConfigLoader.load(path: "c.yaml", text: "version: 1\n").backups == BackupsConfig())
    }

    @Test func refusedWithLineAndColumn() {
        let cases: [(String, String)] = [
            ("backups: {target: relative/dir}\n", "c.yaml:2:19: backups.target must be an absolute directory"),
            ("backups: {target: /a/../b}\n", "c.yaml:2:19: backups.target must be an absolute directory"),
            ("backups: {target: \"LABEL=\"}\n", "c.yaml:2:19: backups.target LABEL= needs a volume label"),
            ("backups: {schedule: \"25:00\"}\n", "c.yaml:2:21: backups.schedule must be HH:MM (UTC)"),
            ("backups: {schedule: \"2:00\"}\n", "c.yaml:2:21: backups.schedule must be HH:MM (UTC)"),
            ("backups: {keep: {last: 0}}\n", "c.yaml:2:24: backups.keep.last"),
            ("backups: {keep: {monthly: 3}}\n", "c.yaml:2:18: unknown key 'monthly'"),
            ("backups: {tagret: /x}\n", "c.yaml:2:11: unknown key 'tagret'"),
            ("vms:\n  - {name: web, backup: yes-please}\n", "c.yaml:3:25: vms[0].backup"),
        ]
        for (yaml, expected) in cases {
            let got = errors("version: 1\n" + yaml)
            #expect(got.contains { $0.hasPrefix(expected) }, "\(yaml): \(got)")
        }
    }
}
