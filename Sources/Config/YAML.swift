/// A YAML parser for configuration files: block mappings and sequences,
/// flow collections (`{a: 1}`, `[x, y]`, which makes JSON a subset), plain,
/// single- and double-quoted scalars, literal (`|`) and folded (`>`) block
/// scalars, and comments. Anchors, aliases, tags and multi-document streams
/// are refused with a clear error rather than half-supported. Every node
/// carries its line and column.
public struct YAMLParser {
    private var lines: [[UInt8]]
    private let file: String
    private var li = 0
    private var depth = 0

    public static func parse(_ text: String, file: String) throws(ConfigError) -> Node {
        var p = YAMLParser(text: text, file: file)
        return try p.document()
    }

    private init(text: String, file: String) {
        var ls: [[UInt8]] = []
        var cur: [UInt8] = []
        for c in text.utf8 {
            if c == 0x0a {
                if cur.last == 0x0d { cur.removeLast() }
                ls.append(cur); cur = []
            } else {
                cur.append(c)
            }
        }
        if !cur.isEmpty { ls.append(cur) }
        if let f = ls.first, f.starts(with: [0xEF, 0xBB, 0xBF]) { ls[0] = Array(f.dropFirst(3)) }
        self.lines = ls
        self.file = file
    }

    // MARK: helpers

    private func err(_ line: Int, _ col: Int, _ m: String) -> ConfigError {
        ConfigError(file: file, mark: Mark(line: line + 1, column: col + 1), message: m)
    }

    private func indent(_ l: [UInt8]) -> Int {
        var i = 0
        while i < l.count, l[i] == 0x20 { i += 1 }
        return i
    }

    /// True for blank and comment-only lines.
    private func isBlank(_ l: [UInt8]) -> Bool {
        let i = indent(l)
        return i >= l.count || l[i] == UInt8(ascii: "#")
    }

    private mutating func skipBlank() throws(ConfigError) {
        while li < lines.count {
            let l = lines[li]
            let i = indent(l)
            if i < l.count, l[i] == 0x09 { throw err(li, i, "tab characters are not allowed for indentation") }
            if !isBlank(l) { return }
            li += 1
        }
    }

    /// End of the meaningful content of a line from `from`: before a comment
    /// (`#` at line start or after a space), trailing spaces trimmed.
    private func contentEnd(_ l: [UInt8], from: Int) -> Int {
        var i = from
        var end = from
        var quote: UInt8 = 0
        while i < l.count {
            let c = l[i]
            if quote != 0 {
                if c == quote {
                    if quote == UInt8(ascii: "'"), i + 1 < l.count, l[i + 1] == quote { i += 2; end = i; continue }
                    quote = 0
                } else if c == UInt8(ascii: "\\"), quote == UInt8(ascii: "\""), i + 1 < l.count {
                    i += 1  // the escaped character (a backslash ending the line has none)
                }
                i += 1; end = i; continue
            }
            if c == UInt8(ascii: "#"), i == 0 || l[i - 1] == 0x20 || l[i - 1] == 0x09 { break }
            if (c == UInt8(ascii: "'") || c == UInt8(ascii: "\"")) && (i == from || l[i - 1] == 0x20 || l[i - 1] == UInt8(ascii: "[") || l[i - 1] == UInt8(ascii: "{") || l[i - 1] == UInt8(ascii: ",")) {
                quote = c
            }
            i += 1
            if c != 0x20 && c != 0x09 { end = i }
        }
        return end
    }

    private func text(_ l: [UInt8], _ a: Int, _ b: Int) -> String { String(decoding: l[a..<b], as: UTF8.self) }

    // MARK: document

    private mutating func document() throws(ConfigError) -> Node {
        try skipBlank()
        if li < lines.count, lines[li].starts(with: Array("---".utf8)), lines[li].count == 3 || lines[li][3] == 0x20 {
            li += 1
            try skipBlank()
        }
        guard li < lines.count else { return Node(.scalar("", .plain), Mark(line: 1, column: 1)) }
        let n = try block(indent(lines[li]))
        try skipBlank()
        if li < lines.count {
            let l = lines[li]
            if l.starts(with: Array("---".utf8)) || l.starts(with: Array("...".utf8)) {
                throw err(li, 0, "only one YAML document is allowed")
            }
            throw err(li, indent(l), "unexpected content (check the indentation)")
        }
        return n
    }

    /// A block node whose first line starts at column `col`.
    private mutating func block(_ col: Int) throws(ConfigError) -> Node {
        depth += 1
        defer { depth -= 1 }
        if depth > 64 { throw err(li, col, "nested too deeply") }
        let l = lines[li]
        if isSeqItem(l, col) { return try sequence(col) }
        if try keyEnd(l, col) != nil { return try mapping(col) }
        // a lone scalar or flow collection
        let start = li
        let node = try inlineValue(l, col, inBlockOf: col)
        if li == start { li += 1 }
        return node
    }

    private func isSeqItem(_ l: [UInt8], _ col: Int) -> Bool {
        col < l.count && l[col] == UInt8(ascii: "-") && (col + 1 == l.count || l[col + 1] == 0x20)
    }

    /// If the line holds `key:` at `col`, the index of the ':'.
    private func keyEnd(_ l: [UInt8], _ col: Int) throws(ConfigError) -> Int? {
        guard col < l.count else { return nil }
        let c = l[col]
        if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") || c == UInt8(ascii: "#") { return nil }
        var i = col
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            // skip the quoted key
            i += 1
            while i < l.count {
                if l[i] == UInt8(ascii: "\\"), c == UInt8(ascii: "\"") { i += 2; continue }
                if l[i] == c {
                    if c == UInt8(ascii: "'"), i + 1 < l.count, l[i + 1] == c { i += 2; continue }
                    break
                }
                i += 1
            }
            i += 1
            while i < l.count, l[i] == 0x20 { i += 1 }
            if i < l.count, l[i] == UInt8(ascii: ":"), i + 1 == l.count || l[i + 1] == 0x20 { return i }
            return nil
        }
        let end = contentEnd(l, from: col)
        while i < end {
            if l[i] == UInt8(ascii: ":"), i + 1 == l.count || l[i + 1] == 0x20 || l[i + 1] == 0x09 { return i }
            if l[i] == UInt8(ascii: "#"), i > col, l[i - 1] == 0x20 { return nil }
            i += 1
        }
        return nil
    }

    private mutating func mapping(_ col: Int) throws(ConfigError) -> Node {
        let mark = Mark(line: li + 1, column: col + 1)
        var pairs: [(Node, Node)] = []
        var seen: [String: Mark] = [:]
        while true {
            try skipBlank()
            guard li < lines.count else { break }
            let l = lines[li]
            let ind = indent(l)
            if ind < col { break }
            if ind > col { throw err(li, ind, "unexpected indentation") }
            if isSeqItem(l, col) { throw err(li, col, "a list item where a key was expected") }
            guard let colon = try keyEnd(l, col) else {
                throw err(li, col, "expected 'key: value'")
            }
            var kEnd = colon
            while kEnd > col, l[kEnd - 1] == 0x20 { kEnd -= 1 }
            let keyMark = Mark(line: li + 1, column: col + 1)
            let key: Node
            if l[col] == UInt8(ascii: "\"") || l[col] == UInt8(ascii: "'") {
                var ci = col
                let s = try quoted(l, &ci)
                key = Node(.scalar(s, l[col] == UInt8(ascii: "'") ? .singleQuoted : .doubleQuoted), keyMark)
            } else {
                let k = text(l, col, kEnd)
                if k.hasPrefix("&") || k.hasPrefix("*") || k.hasPrefix("!") || k.hasPrefix("?") {
                    throw err(li, col, "anchors, aliases, tags and complex keys are not supported")
                }
                key = Node(.scalar(k, .plain), keyMark)
            }
            let ks = key.scalarText ?? ""
            if let prev = seen[ks] {
                throw err(li, col, "duplicate key '\(Names.clip(ks))' (first at line \(prev.line))")
            }
            seen[ks] = keyMark
            var vStart = colon + 1
            while vStart < l.count, l[vStart] == 0x20 || l[vStart] == 0x09 { vStart += 1 }
            let vEnd = contentEnd(l, from: vStart)
            let value: Node
            if vStart >= vEnd {
                // value on the following lines
                li += 1
                try skipBlank()
                if li < lines.count {
                    let nl = lines[li]
                    let ni = indent(nl)
                    if ni > col {
                        value = try block(ni)
                    } else if ni == col, isSeqItem(nl, col) {
                        value = try sequence(col)
                    } else {
                        value = Node(.scalar("", .plain), Mark(line: keyMark.line, column: colon + 2))
                    }
                } else {
                    value = Node(.scalar("", .plain), Mark(line: keyMark.line, column: colon + 2))
                }
            } else {
                let start = li
                value = try inlineValue(l, vStart, inBlockOf: col)
                if li == start { li += 1 }
            }
            pairs.append((key, value))
        }
        return Node(.mapping(pairs), mark)
    }

    private mutating func sequence(_ col: Int) throws(ConfigError) -> Node {
        let mark = Mark(line: li + 1, column: col + 1)
        var items: [Node] = []
        while true {
            try skipBlank()
            guard li < lines.count else { break }
            let l = lines[li]
            let ind = indent(l)
            if ind < col { break }
            if ind > col { throw err(li, ind, "unexpected indentation") }
            guard isSeqItem(l, col) else { break }
            var c = col + 1
            while c < l.count, l[c] == 0x20 { c += 1 }
            if c >= contentEnd(l, from: c) {
                // an empty item is where its value would be, on its own line
                let empty = Mark(line: li + 1, column: min(col + 3, l.count + 1))
                li += 1
                try skipBlank()
                if li < lines.count, indent(lines[li]) > col {
                    items.append(try block(indent(lines[li])))
                } else {
                    items.append(Node(.scalar("", .plain), empty))
                }
            } else {
                // Treat "- " as indentation: the item is a block at column c.
                lines[li][col] = 0x20
                items.append(try block(c))
            }
        }
        return Node(.sequence(items), mark)
    }

    // MARK: inline values

    /// A value that starts on line `li` at `col`: flow collection, block
    /// scalar indicator, quoted or plain scalar. May consume following lines.
    private mutating func inlineValue(_ l: [UInt8], _ col: Int, inBlockOf parent: Int) throws(ConfigError) -> Node {
        let mark = Mark(line: li + 1, column: col + 1)
        let c = l[col]
        switch c {
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            var ci = col
            let n = try flow(&ci)
            let rest = contentEnd(lines[li], from: ci)
            var j = ci
            while j < rest, lines[li][j] == 0x20 { j += 1 }
            if j < rest { throw err(li, j, "unexpected text after a flow collection") }
            li += 1
            return n
        case UInt8(ascii: "|"), UInt8(ascii: ">"):
            return try blockScalar(l, col, parent: parent)
        case UInt8(ascii: "&"), UInt8(ascii: "*"), UInt8(ascii: "!"):
            throw err(li, col, "anchors, aliases and tags are not supported")
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            var ci = col
            let s = try quoted(l, &ci)
            let rest = contentEnd(l, from: ci)
            var j = ci
            while j < rest, l[j] == 0x20 { j += 1 }
            if j < rest { throw err(li, j, "unexpected text after a quoted string") }
            li += 1
            return Node(.scalar(s, c == UInt8(ascii: "'") ? .singleQuoted : .doubleQuoted), mark)
        default:
            let end = contentEnd(l, from: col)
            let s = text(l, col, end)
            if s.contains(": ") || s.hasSuffix(":") {
                throw err(li, col, "a 'key: value' pair is not allowed here (check the indentation)")
            }
            li += 1
            // plain multi-line continuation is not supported: the next line must not be more indented text
            return Node(.scalar(s, .plain), mark)
        }
    }

    private mutating func blockScalar(_ l: [UInt8], _ col: Int, parent: Int) throws(ConfigError) -> Node {
        let mark = Mark(line: li + 1, column: col + 1)
        let folded = l[col] == UInt8(ascii: ">")
        var chomp = 0 // 0 clip, -1 strip, 1 keep
        var i = col + 1
        while i < l.count, l[i] != 0x20, l[i] != UInt8(ascii: "#") {
            if l[i] == UInt8(ascii: "-") { chomp = -1 } else if l[i] == UInt8(ascii: "+") { chomp = 1 } else {
                throw err(li, i, "unsupported block scalar indicator")
            }
            i += 1
        }
        li += 1
        var body: [String] = []
        var blockIndent = -1
        while li < lines.count {
            let bl = lines[li]
            let ind = indent(bl)
            if ind >= bl.count { body.append(""); li += 1; continue }
            if blockIndent < 0 {
                if ind <= parent { break }
                blockIndent = ind
            }
            if ind < blockIndent { break }
            body.append(text(bl, blockIndent, bl.count))
            li += 1
        }
        var trailing = 0
        while let last = body.last, last.isEmpty { body.removeLast(); trailing += 1 }
        var s: String
        if folded {
            s = ""
            for (k, line) in body.enumerated() {
                if k > 0 { s += (line.isEmpty || body[k - 1].isEmpty || line.hasPrefix(" ")) ? "\n" : " " }
                s += line
            }
        } else {
            s = body.joined(separator: "\n")
        }
        if chomp == 0 && !body.isEmpty { s += "\n" }
        if chomp == 1 { s += "\n" + String(repeating: "\n", count: trailing) }
        return Node(.scalar(s, .doubleQuoted), mark)
    }

    private func quoted(_ l: [UInt8], _ ci: inout Int) throws(ConfigError) -> String {
        let q = l[ci]
        let start = ci
        ci += 1
        var out: [UInt8] = []
        while true {
            guard ci < l.count else { throw err(li, start, "unterminated quoted string (quoted strings must end on the same line)") }
            let c = l[ci]
            if c == q {
                if q == UInt8(ascii: "'"), ci + 1 < l.count, l[ci + 1] == q { out.append(q); ci += 2; continue }
                ci += 1
                break
            }
            if c == UInt8(ascii: "\\"), q == UInt8(ascii: "\"") {
                guard ci + 1 < l.count else { throw err(li, ci, "unterminated escape") }
                let e = l[ci + 1]
                ci += 2
                switch e {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "0"): out.append(0)
                case UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "/"), UInt8(ascii: " "): out.append(e)
                case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let n = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                    guard ci + n <= l.count, let v = UInt32(text(l, ci, ci + n), radix: 16), let sc = Unicode.Scalar(v) else {
                        throw err(li, ci - 2, "invalid escape")
                    }
                    out.append(contentsOf: Array(String(sc).utf8))
                    ci += n
                default: throw err(li, ci - 2, "invalid escape '\\\(String(UnicodeScalar(e)))'")
                }
                continue
            }
            out.append(c)
            ci += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: flow collections (may span lines)

    private mutating func flowSkip(_ ci: inout Int) throws(ConfigError) {
        while true {
            while li < lines.count, ci < lines[li].count, lines[li][ci] == 0x20 || lines[li][ci] == 0x09 { ci += 1 }
            if li < lines.count, ci < lines[li].count, lines[li][ci] == UInt8(ascii: "#") { ci = lines[li].count }
            if li < lines.count, ci >= lines[li].count {
                li += 1; ci = 0
                if li >= lines.count { throw err(lines.count - 1, 0, "unterminated flow collection") }
                continue
            }
            return
        }
    }

    private mutating func flow(_ ci: inout Int) throws(ConfigError) -> Node {
        depth += 1
        defer { depth -= 1 }
        if depth > 64 { throw err(li, ci, "nested too deeply") }
        let open = lines[li][ci]
        let mark = Mark(line: li + 1, column: ci + 1)
        let close = open == UInt8(ascii: "[") ? UInt8(ascii: "]") : UInt8(ascii: "}")
        ci += 1
        var items: [Node] = []
        var pairs: [(Node, Node)] = []
        var seen = Set<String>()
        while true {
            try flowSkip(&ci)
            if lines[li][ci] == close { ci += 1; break }
            if open == UInt8(ascii: "{") {
                let k = try flowScalar(&ci, isKey: true)
                try flowSkip(&ci)
                guard lines[li][ci] == UInt8(ascii: ":") else { throw err(li, ci, "expected ':' in a flow mapping") }
                ci += 1
                try flowSkip(&ci)
                let v: Node
                if lines[li][ci] == UInt8(ascii: ",") || lines[li][ci] == close {
                    v = Node(.scalar("", .plain), Mark(line: li + 1, column: ci + 1))
                } else {
                    v = try flowValue(&ci)
                }
                let ks = k.scalarText ?? ""
                if !seen.insert(ks).inserted { throw err(k.mark.line - 1, k.mark.column - 1, "duplicate key '\(Names.clip(ks))'") }
                pairs.append((k, v))
            } else {
                items.append(try flowValue(&ci))
            }
            try flowSkip(&ci)
            let c = lines[li][ci]
            if c == UInt8(ascii: ",") { ci += 1; continue }
            if c == close { ci += 1; break }
            throw err(li, ci, "expected ',' or '\(String(UnicodeScalar(close)))'")
        }
        return open == UInt8(ascii: "[") ? Node(.sequence(items), mark) : Node(.mapping(pairs), mark)
    }

    private mutating func flowValue(_ ci: inout Int) throws(ConfigError) -> Node {
        let c = lines[li][ci]
        if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { return try flow(&ci) }
        return try flowScalar(&ci, isKey: false)
    }

    private mutating func flowScalar(_ ci: inout Int, isKey: Bool) throws(ConfigError) -> Node {
        let l = lines[li]
        let mark = Mark(line: li + 1, column: ci + 1)
        let c = l[ci]
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            let s = try quoted(l, &ci)
            return Node(.scalar(s, c == UInt8(ascii: "'") ? .singleQuoted : .doubleQuoted), mark)
        }
        if c == UInt8(ascii: "&") || c == UInt8(ascii: "*") || c == UInt8(ascii: "!") {
            throw err(li, ci, "anchors, aliases and tags are not supported")
        }
        let start = ci
        var end = ci
        while ci < l.count {
            let d = l[ci]
            if d == UInt8(ascii: ",") || d == UInt8(ascii: "]") || d == UInt8(ascii: "}") || d == UInt8(ascii: "[") || d == UInt8(ascii: "{") { break }
            if d == UInt8(ascii: ":"), ci + 1 >= l.count || l[ci + 1] == 0x20 || l[ci + 1] == UInt8(ascii: ",") || l[ci + 1] == UInt8(ascii: "}") || l[ci + 1] == UInt8(ascii: "]") || isKey { break }
            if d == UInt8(ascii: "#"), ci > start, l[ci - 1] == 0x20 { break }
            ci += 1
            if d != 0x20 { end = ci }
        }
        if end == start { throw err(li, start, "expected a value") }
        return Node(.scalar(text(l, start, end), .plain), mark)
    }
}
