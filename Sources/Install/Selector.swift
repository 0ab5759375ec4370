import Config
import Disks
#if canImport(Glibc)
import Glibc
#endif

/// Shell-style globs (`*`, `?`, `[…]`).
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, 0) == 0
    }
}

extension DiskSelector {
    /// Why the disk matches (one reason per criterion), or nil when any
    /// criterion fails.
    public func match(_ d: DiskInfo) -> [String]? {
        var why: [String] = []
        if let p = path {
            if Glob.matches(p, d.path) { why.append("path \(d.path) matches \"\(p)\"") }
            else if let b = d.byID, Glob.matches(p, b) { why.append("path \(b) matches \"\(p)\"") }
            else { return nil }
        }
        if let p = byID {
            guard let b = d.byID else { return nil }
            let base = b.split(separator: "/").last.map(String.init) ?? b
            guard Glob.matches(p, b) || Glob.matches(p, base) else { return nil }
            why.append("by-id \(base) matches \"\(p)\"")
        }
        if let p = serial {
            guard let s = d.serial, Glob.matches(p, s) else { return nil }
            why.append("serial \(s) matches \"\(p)\"")
        }
        if let p = model {
            guard let m = d.model, Glob.matches(p, m) else { return nil }
            why.append("model \(m) matches \"\(p)\"")
        }
        if let c = size {
            guard c.matches(d.size) else { return nil }
            why.append("size \(Sizes.human(d.size)) is \(c)")
        }
        if let s = ssd {
            guard d.ssd == s else { return nil }
            why.append(s ? "is an SSD (not rotational)" : "is rotational")
        }
        return why
    }

    /// The selector as the user wrote it: `{serial: "TARGET*", size: ">= 8G"}`.
    public var summary: String {
        var parts: [String] = []
        if let v = path { parts.append("path: \"\(v)\"") }
        if let v = byID { parts.append("by_id: \"\(v)\"") }
        if let v = serial { parts.append("serial: \"\(v)\"") }
        if let v = model { parts.append("model: \"\(v)\"") }
        if let v = size { parts.append("size: \"\(v)\"") }
        if let v = ssd { parts.append("ssd: \(v)") }
        return "{" + parts.joined(separator: ", ") + "}"
    }
}
