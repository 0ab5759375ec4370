import Config

extension Array where Element == DiskInfo {
    /// The `cloudbios disks` table: one line per disk, one per partition below it.
    public func table() -> String {
        var rows: [[String]] = [["NAME", "SIZE", "TYPE", "MODEL", "SERIAL", "CONTENTS", "NOTES"]]
        for d in self {
            var notes: [String] = []
            if d.isBootMedium { notes.append("boot medium") }
            if d.readOnly { notes.append("read-only") }
            if d.removable { notes.append("removable") }
            notes.append(d.rotational ? "hdd" : "ssd")
            if !d.mountpoints.isEmpty { notes.append("mounted " + d.mountpoints.joined(separator: ",")) }
            if let b = d.backingFile { notes.append("file " + b) }
            if d.cloudbiosInstalled { notes.append("cloudbios") }
            let contents = d.filesystem?.summary ?? d.partitionTable ?? "empty"
            rows.append([d.path, Sizes.human(d.size), d.transport.rawValue, d.model ?? "-", d.serial ?? "-", contents, notes.joined(separator: ", ")])
            for p in d.partitions {
                var pn: [String] = []
                if let n = p.name { pn.append("\"\(n)\"") }
                if !p.mountpoints.isEmpty { pn.append("mounted " + p.mountpoints.joined(separator: ",")) }
                rows.append(["  " + (p.path ?? "#\(p.number)"), Sizes.human(p.size), "part", "", "", p.filesystem?.summary ?? "-", pn.joined(separator: ", ")])
            }
        }
        var widths = [Int](repeating: 0, count: rows[0].count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = Swift.max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }
                .joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n") + "\n"
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
