/// The strict decoder: turns a parsed `Node` tree into model types, collecting
/// every problem (unknown keys with a suggestion, wrong types, bad values) as
/// `FILE:LINE:COL: message` instead of stopping at the first.
struct StrictDecoder {
    let file: String
    var errors: [ConfigError] = []

    init(file: String) { self.file = file }

    mutating func error(_ node: Node, _ message: String) {
        errors.append(ConfigError(file: file, mark: node.mark, message: message))
    }

    mutating func error(_ mark: Mark, _ message: String) {
        errors.append(ConfigError(file: file, mark: mark, message: message))
    }

    /// Reads the keys of a mapping; `finish` reports the keys nobody asked for.
    struct Map {
        var pairs: [(Node, Node)]
        var mark: Mark
        var path: String
        var used = Set<String>()
        subscript(_ key: String) -> Node? {
            mutating get {
                used.insert(key)
                return pairs.first { $0.0.scalarText == key }?.1
            }
        }
    }

    mutating func map(_ node: Node, _ path: String) -> Map? {
        guard case .mapping(let pairs) = node.kind else {
            if node.isNull { return Map(pairs: [], mark: node.mark, path: path) }
            error(node, "\(path.isEmpty ? "the document" : path) must be a mapping, not \(node.kindName)")
            return nil
        }
        return Map(pairs: pairs, mark: node.mark, path: path)
    }

    mutating func finish(_ m: Map) {
        let known = Array(m.used)
        for (k, _) in m.pairs {
            let name = k.scalarText ?? ""
            if m.used.contains(name) { continue }
            var msg = "unknown key '\(Names.clip(name))'"
            if !m.path.isEmpty { msg += " in \(m.path)" }
            if let s = Suggest.closest(name, in: known) { msg += " (did you mean '\(s)'?)" }
            error(k, msg)
        }
    }

    mutating func string(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let s, _) = node.kind, !node.isNull else {
            error(node, "\(path) must be a string, not \(node.kindName)")
            return nil
        }
        return s
    }

    mutating func int(_ node: Node, _ path: String, _ range: ClosedRange<Int>? = nil) -> Int? {
        guard case .scalar(let s, .plain) = node.kind, let v = Int(s) else {
            error(node, "\(path) must be a whole number")
            return nil
        }
        if let range, !range.contains(v) {
            error(node, "\(path) must be between \(range.lowerBound) and \(range.upperBound), not \(v)")
            return nil
        }
        return v
    }

    mutating func bool(_ node: Node, _ path: String) -> Bool? {
        if case .scalar(let s, .plain) = node.kind {
            if s == "true" { return true }
            if s == "false" { return false }
        }
        error(node, "\(path) must be true or false")
        return nil
    }

    mutating func choice<E: RawRepresentable & CaseIterable>(_ node: Node, _ path: String, _: E.Type) -> E? where E.RawValue == String {
        guard let s = string(node, path) else { return nil }
        if let v = E(rawValue: s) { return v }
        let all = E.allCases.map(\.rawValue)
        var msg = "\(path) must be one of \(all.joined(separator: ", ")), not '\(Names.clip(s))'"
        if let g = Suggest.closest(s, in: all) { msg += " (did you mean '\(g)'?)" }
        error(node, msg)
        return nil
    }

    /// A size with units; bare numbers are `bareUnit`s. (Its bounds are
    /// the rules' business: `VMLimits`.)
    mutating func size(_ node: Node, _ path: String, bareUnit: Int64) -> Int64? {
        guard case .scalar(let s, _) = node.kind, !node.isNull, let v = Sizes.parse(s, bareUnit: bareUnit) else {
            error(node, "\(path) must be a size like 512M, 8G or 8GiB")
            return nil
        }
        return v
    }

    mutating func list(_ node: Node, _ path: String) -> [Node]? {
        if node.isNull { return [] }
        guard case .sequence(let items) = node.kind else {
            error(node, "\(path) must be a list, not \(node.kindName)")
            return nil
        }
        return items
    }
}

enum Suggest {
    /// The closest candidate within a small edit distance.
    static func closest(_ word: String, in candidates: [String]) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = distance(Array(word.lowercased().utf8), Array(c.utf8))
            let limit = max(1, min(3, c.count / 3))
            if d <= limit, best == nil || d < best!.1 { best = (c, d) }
        }
        return best?.0
    }

    static func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = prev
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { cur[j] = min(cur[j], prev[j - 2 < 0 ? 0 : j - 2] + 1) }
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
