/// Sizes as users write them: `256M`, `8G`, `8GiB`, `1.5T`, `4096` (bytes, or
/// MiB where the caller says so). Binary units: K = KiB = 1024.
public enum Sizes {
    /// Parses a size. `bareUnit` is what a number without a unit means
    /// (1 for bytes, 1 << 20 for MiB). Nil when malformed or not positive.
    public static func parse(_ text: String, bareUnit: Int64 = 1) -> Int64? {
        var s = Substring(text.trimmingSpaces())
        guard !s.isEmpty else { return nil }
        var mult: Int64 = bareUnit
        let upper = s.uppercased()
        let units: [(String, Int64)] = [
            ("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
            ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("TB", 1 << 40),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40), ("B", 1),
        ]
        for (u, m) in units where upper.hasSuffix(u) {
            mult = m
            s = s.dropLast(u.count)
            break
        }
        s = Substring(String(s).trimmingSpaces())
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else { return nil }
        if let whole = Int64(s) {
            let (r, o) = whole.multipliedReportingOverflow(by: mult)
            return o || r <= 0 ? nil : r
        }
        guard let d = Double(s), d > 0 else { return nil }
        let v = d * Double(mult)
        guard v < 9.0e18 else { return nil }
        return Int64(v.rounded())
    }

    private static let units: [(String, Int64)] = [("T", Int64(1) << 40), ("G", Int64(1) << 30), ("M", Int64(1) << 20), ("K", Int64(1) << 10)]

    /// `8G`, `512M`, `1536K`, or bytes when not a whole multiple.
    public static func format(_ bytes: Int64) -> String {
        for (u, m) in units where bytes >= m && bytes % m == 0 {
            return "\(bytes / m)\(u)"
        }
        return "\(bytes)"
    }

    /// Human form with one decimal: `7.5 GiB`.
    public static func human(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(bytes)
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        if u == 0 { return "\(bytes) B" }
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[u])"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
