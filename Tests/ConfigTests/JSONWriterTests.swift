import Testing
@testable import Config

/// The JSON writer against a plain reference writer (the one over Swift
/// strings, scalar by scalar, that it replaced): the same text for random
/// values full of the characters that need escaping, compact and pretty.
@Suite struct JSONWriterTests {
    /// The reference: every rule spelled out on Unicode scalars.
    static func reference(_ v: JSONValue, pretty: Bool, indent: Int = 0) -> String {
        func str(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if u.value < 0x20 || u.value == 0x7f || u.value == 0x2028 || u.value == 0x2029 {
                        let h = String(u.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                    } else {
                        out.unicodeScalars.append(u)
                    }
                }
            }
            return out + "\""
        }
        let pad = { (n: Int) in "\n" + String(repeating: "  ", count: n) }
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d):
            if !d.isFinite { return "null" }
            if d.rounded() == d && abs(d) < 1e15 { return String(Int64(d)) }
            return "\(d)"
        case .string(let s): return str(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            let items = a.map { (pretty ? pad(indent + 1) : "") + reference($0, pretty: pretty, indent: indent + 1) }
            return "[" + items.joined(separator: ",") + (pretty ? pad(indent) : "") + "]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            let items = o.keys.sorted().map {
                (pretty ? pad(indent + 1) : "") + str($0) + (pretty ? ": " : ":") + reference(o[$0]!, pretty: pretty, indent: indent + 1)
            }
            return "{" + items.joined(separator: ",") + (pretty ? pad(indent) : "") + "}"
        }
    }

    struct Rand {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
    }

    static let pieces: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{1f}", "\u{7f}",
                                   "\u{80}", "\u{9f}", "é", "e\u{301}", "\u{2028}", "\u{2029}", "\u{2027}", "\u{202a}", "€",
                                   "😀", "👩‍💻", "\u{fffd}", "\u{e2}\u{80}"]

    static func string(_ r: inout Rand) -> String {
        var s = ""
        for _ in 0..<r.next(12) { s += pieces[r.next(pieces.count)] }
        return s
    }

    static func value(_ r: inout Rand, depth: Int) -> JSONValue {
        switch r.next(depth > 3 ? 4 : 6) {
        case 0: return [.null, .bool(true), .bool(false)][r.next(3)]
        case 1:
            let numbers: [Double] = [0, -0.0, 1, -1, 42, 1e15, 1e15 - 1, -1e15 + 1, 1e15 + 2, 0.5, -2.25, 1e-7, 3.14159,
                                     .infinity, -.infinity, .nan, Double(Int64.max), 9007199254740993, 123456789012345]
            return .number(numbers[r.next(numbers.count)] * (r.next(2) == 0 ? 1 : Double(r.next(1000))))
        case 2, 3: return .string(string(&r))
        case 4: return .array((0..<r.next(4)).map { _ in value(&r, depth: depth + 1) })
        default:
            var o: [String: JSONValue] = [:]
            for _ in 0..<r.next(5) { o[string(&r)] = value(&r, depth: depth + 1) }
            return .object(o)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func writesWhatTheReferenceWrites(seed: UInt64) {
        var r = Rand(state: seed)
        for _ in 0..<300 {
            let v = JSONWriterTests.value(&r, depth: 0)
            for pretty in [false, true] {
                let want = JSONWriterTests.reference(v, pretty: pretty)
                #expect(v.serialized(pretty: pretty) == want)
                #expect(v.bytes(pretty: pretty) == Array(want.utf8))
            }
        }
    }

    @Test func escapesLineSeparatorsAndControls() {
        #expect(JSONValue.string("a\u{2028}b\u{2029}\u{7f}\u{0}").serialized() == #""a\u2028b\u2029\u007f\u0000""#)
        #expect(JSONValue.array([.number(-12), .number(1e15), .number(1e15 - 1), .number(0.5)]).serialized() == "[-12,1000000000000000.0,999999999999999,0.5]")
    }
}
