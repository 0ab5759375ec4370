/// The `backups:` section: where backups go, when the daily run is, what
/// retention keeps; and the names backups are known by.
///
/// ```yaml
/// backups:
///   target: /var/lib/cloudbios/backups   # or LABEL=NAME of a disk to mount
///   schedule: "02:00"                    # daily (UTC), for VMs with backup: true
///   keep: {last: 3, daily: 7, weekly: 4}
/// ```
public struct BackupsConfig: Sendable, Equatable {
    /// A directory, or `LABEL=NAME`; nil: `STATE/backups` (the data partition).
    public var target: String?
    /// Hour and minute of the daily run (UTC); nil: no schedule.
    public var schedule: (hour: Int, minute: Int)? {
        get { scheduleText.flatMap(Self.parseSchedule) }
        set { scheduleText = newValue.map { Self.pad($0.hour) + ":" + Self.pad($0.minute) } }
    }
    public var scheduleText: String?
    public var keepLast = 3
    public var keepDaily = 7
    public var keepWeekly = 4
    public init() {}

    /// `HH:MM`, 00:00 to 23:59.
    public static func parseSchedule(_ s: String) -> (hour: Int, minute: Int)? {
        let p = s.split(separator: ":", omittingEmptySubsequences: false)
        guard p.count == 2, p[0].count == 2, p[1].count == 2, let h = Int(p[0]), let m = Int(p[1]),
              (0...23).contains(h), (0...59).contains(m) else { return nil }
        return (h, m)
    }

    static func pad(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }

    public static func == (a: BackupsConfig, b: BackupsConfig) -> Bool {
        a.target == b.target && a.scheduleText == b.scheduleText && a.keepLast == b.keepLast
            && a.keepDaily == b.keepDaily && a.keepWeekly == b.keepWeekly
    }
}

extension Names {
    /// Volume labels a backup target is named by: 1 to 16 letters, digits, `-`, `_`.
    public static func checkVolumeLabel(_ l: String) -> String? {
        guard !l.isEmpty, l.utf8.count <= 16, l.utf8.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }) else {
            return "a volume label is 1 to 16 letters, digits, '-' or '_'"
        }
        return nil
    }

    /// Backup ids: `YYYYMMDD-HHMMSS-` and 4 to 16 lower-case hex digits
    /// (safe as a directory name).
    public static func checkBackupID(_ id: String) -> String? {
        let u = Array(id.utf8)
        func digits(_ r: Range<Int>) -> Bool { u[r].allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        guard u.count >= 20, u.count <= 32, digits(0..<8), u[8] == UInt8(ascii: "-"), digits(9..<15),
              u[15] == UInt8(ascii: "-"), u[16...].allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            return "backup id '\(clip(id))' is invalid"
        }
        return nil
    }
}

extension StrictDecoder {
    mutating func backups(_ node: Node) -> BackupsConfig {
        var b = BackupsConfig()
        guard var m = map(node, "backups") else { return b }
        if let n = m["target"], let s = string(n, "backups.target") {
            if s.hasPrefix("LABEL=") {
                let label = s.dropFirst(6)
                if Names.checkVolumeLabel(String(label)) != nil {
                    error(n, "backups.target LABEL= needs a volume label of up to 16 letters, digits, '-' or '_'")
                } else {
                    b.target = s
                }
            } else if !s.hasPrefix("/") || s.split(separator: "/").contains("..")
                        || !s.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "\\") }) {
                error(n, "backups.target must be an absolute directory (printable ASCII, no spaces, commas or '..') or LABEL=NAME")
            } else {
                b.target = s
            }
        }
        if let n = m["schedule"], let s = string(n, "backups.schedule") {
            if BackupsConfig.parseSchedule(s) != nil { b.scheduleText = s } else { error(n, "backups.schedule must be HH:MM (UTC), e.g. \"02:00\"") }
        }
        if let n = m["keep"], var k = map(n, "backups.keep") {
            if let x = k["last"], let v = int(x, "backups.keep.last", 1...1000) { b.keepLast = v }
            if let x = k["daily"], let v = int(x, "backups.keep.daily", 0...1000) { b.keepDaily = v }
            if let x = k["weekly"], let v = int(x, "backups.keep.weekly", 0...1000) { b.keepWeekly = v }
            finish(k)
        }
        finish(m)
        return b
    }
}
