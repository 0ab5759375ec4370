/// A strict JSON parser (RFC 8259) producing `Node`s with line and column,
/// so request bodies get the same precise errors as the config file.
public struct JSONParser {
    private let b: [UInt8]
    private var i = 0
    private var line = 1
    private var lineStart = 0
    private let file: String
    private var depth = 0
    static let maxDepth = 64

    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> Node {
        var p = JSONParser(b: bytes, file: file)
        p.skipWS()
        let n = try p.value()
        p.skipWS()
        if p.i < p.b.count { throw p.error("unexpected '\(p.charName(p.b[p.i]))' after the JSON value") }
        return n
    }

    private init(b: [UInt8], file: String) { self.b = b; self.file = file }

    private var mark: Mark { Mark(line: line, column: i - lineStart + 1) }

    private func error(_ m: String) -> ConfigError { ConfigError(file: file, mark: mark, message: m) }

    /// An error at index `at` of the input, on the current line (as anywhere
    /// in a string, which holds no newline).
    private func error(_ m: String, at: Int) -> ConfigError {
        ConfigError(file: file, mark: Mark(line: line, column: at - lineStart + 1), message: m)
    }

    private func charName(_ c: UInt8) -> String {
        c >= 0x20 && c < 0x7f ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
    }

    private mutating func skipWS() {
        while i < b.count {
            switch b[i] {
            case 0x20, 0x09, 0x0d: i += 1
            case 0x0a: i += 1; line += 1; lineStart = i
            default: return
            }
        }
    }

    private mutating func value() throws(ConfigError) -> Node {
        guard i < b.count else { throw error("unexpected end of input") }
        let m = mark
        switch b[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return Node(.scalar(try string(), .doubleQuoted), m)
        case UInt8(ascii: "t"): try literal("true"); return Node(.scalar("true", .plain), m)
        case UInt8(ascii: "f"): try literal("false"); return Node(.scalar("false", .plain), m)
        case UInt8(ascii: "n"): try literal("null"); return Node(.scalar("null", .plain), m)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return Node(.scalar(try number(), .plain), m)
        default: throw error("unexpected '\(charName(b[i]))'")
        }
    }

    private mutating func literal(_ word: String) throws(ConfigError) {
        let w = Array(word.utf8)
        guard i + w.count <= b.count, Array(b[i..<i + w.count]) == w else { throw error("invalid literal") }
        i += w.count
    }

    private mutating func number() throws(ConfigError) -> String {
        let start = i
        if b[i] == UInt8(ascii: "-") { i += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.i
            while p.i < p.b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.b[p.i]) { p.i += 1 }
            return p.i - s
        }
        if i < b.count, b[i] == UInt8(ascii: "0") { i += 1 } else if digits(&self) == 0 { throw error("invalid number") }
        if i < b.count, b[i] == UInt8(ascii: ".") { i += 1; if digits(&self) == 0 { throw error("invalid number") } }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            if digits(&self) == 0 { throw error("invalid number") }
        }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    private mutating func hex4() throws(ConfigError) -> UInt32 {
        guard i + 4 <= b.count else { throw error("truncated \\u escape") }
        guard let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16) else { throw error("invalid \\u escape") }
        i += 4
        return v
    }

    private mutating func string() throws(ConfigError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < b.count else { throw error("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw error("control character in string") }
            if c == UInt8(ascii: "\\") {
                let escape = i
                i += 1
                guard i < b.count else { throw error("unterminated string") }
                let e = b[i]; i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5c)
                case UInt8(ascii: "/"): out.append(0x2f)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var v = try hex4()
                    if (0xD800...0xDBFF).contains(v) {
                        guard i + 6 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else { throw error("unpaired surrogate") }
                        i += 2
                        let lo = try hex4()
                        guard (0xDC00...0xDFFF).contains(lo) else { throw error("unpaired surrogate") }
                        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(v) {
                        throw error("unpaired surrogate")
                    }
                    guard let s = Unicode.Scalar(v) else { throw error("invalid code point") }
                    out.append(contentsOf: Array(String(s).utf8))
                default: throw error("invalid escape '\\\(charName(e))'", at: escape)
                }
            } else {
                out.append(c); i += 1
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw error("string is not valid UTF-8") }
        return s
    }

    private mutating func array() throws(ConfigError) -> Node {
        let m = mark
        depth += 1
        defer { depth -= 1 }
        if depth > JSONParser.maxDepth { throw error("nested too deeply") }
        i += 1
        var items: [Node] = []
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return Node(.sequence(items), m) }
        while true {
            skipWS()
            items.append(try value())
            skipWS()
            guard i < b.count else { throw error("unterminated array") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "]") { i += 1; return Node(.sequence(items), m) }
            throw error("expected ',' or ']'")
        }
    }

    private mutating func object() throws(ConfigError) -> Node {
        let m = mark
        depth += 1
        defer { depth -= 1 }
        if depth > JSONParser.maxDepth { throw error("nested too deeply") }
        i += 1
        var pairs: [(Node, Node)] = []
        // a key given twice is refused, as YAML's are: which one wins is
        // read differently by different parsers
        var keys: [String: Mark] = [:]
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return Node(.mapping(pairs), m) }
        while true {
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let km = mark
            let key = try string()
            if let first = keys[key] {
                throw ConfigError(file: file, mark: km, message: "duplicate key '\(Names.clip(key))' (first at line \(first.line), column \(first.column))")
            }
            keys[key] = km
            let k = Node(.scalar(key, .doubleQuoted), km)
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw error("expected ':' after key") }
            i += 1
            skipWS()
            let v = try value()
            pairs.append((k, v))
            skipWS()
            guard i < b.count else { throw error("unterminated object") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { i += 1; return Node(.mapping(pairs), m) }
            throw error("expected ',' or '}'")
        }
    }
}
