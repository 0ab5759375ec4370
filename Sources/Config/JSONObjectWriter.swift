/// Writes one JSON object straight into bytes, its members given in key
/// order: the same text as the `JSONValue` of that object, without building
/// it. Members in `extra` (in key order too) are merged in among the
/// others, so one type adds members to another's object (a VM's status to
/// its spec's). A type whose JSON is written this way derives its
/// `JSONValue` from the text, so there is one description of each.
public struct JSONObjectWriter {
    private var out: [UInt8] = []
    private var extra: ArraySlice<(StaticString, JSONValue)>
    private var empty = true
    private var lastKey: StaticString = ""

    /// Writes `{`, the members `body` gives and the `extra` ones, then `}`.
    /// Keys are plain ASCII names (nothing in them to escape).
    public static func write(into out: inout [UInt8], extra: [(StaticString, JSONValue)] = [],
                             _ body: (inout JSONObjectWriter) -> Void) {
        var w = JSONObjectWriter(extra: extra[...])
        swap(&w.out, &out)
        w.out.append(0x7b)
        body(&w)
        w.flushExtra(before: nil)
        w.out.append(0x7d)
        swap(&w.out, &out)
    }

    private init(extra: ArraySlice<(StaticString, JSONValue)>) { self.extra = extra }

    /// Key order: byte order, which is `String`'s order for ASCII.
    static func precedes(_ a: StaticString, _ b: StaticString) -> Bool {
        a.withUTF8Buffer { x in b.withUTF8Buffer { y in x.lexicographicallyPrecedes(y) } }
    }

    private mutating func flushExtra(before key: StaticString?) {
        while let (k, v) = extra.first, key.map({ JSONObjectWriter.precedes(k, $0) }) ?? true {
            extra.removeFirst()
            name(k)
            v.write(into: &out)
        }
    }

    /// The member's key and colon.
    private mutating func name(_ key: StaticString) {
        assert(empty || JSONObjectWriter.precedes(lastKey, key), "JSON members out of order: '\(key)' after '\(lastKey)'")
        assert(key.withUTF8Buffer { !$0.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c || $0 >= 0x7f } }, "JSON key '\(key)' needs escaping")
        lastKey = key
        if empty { empty = false } else { out.append(0x2c) }
        out.append(0x22)
        key.withUTF8Buffer { out.append(contentsOf: $0) }
        out.append(0x22)
        out.append(0x3a)
    }

    /// The extra members that sort before `key`, then `key` and its colon.
    private mutating func member(_ key: StaticString) {
        if !extra.isEmpty { flushExtra(before: key) }
        name(key)
    }

    public mutating func string(_ key: StaticString, _ value: String) {
        member(key)
        JSONValue.writeString(value, into: &out)
    }

    public mutating func number(_ key: StaticString, _ value: Double) {
        member(key)
        JSONValue.writeNumber(value, into: &out)
    }

    public mutating func int(_ key: StaticString, _ value: Int) { number(key, Double(value)) }

    public mutating func bool(_ key: StaticString, _ flag: Bool) {
        member(key)
        out.append(contentsOf: flag ? JSONValue.trueText : JSONValue.falseText)
    }

    public mutating func value(_ key: StaticString, _ value: JSONValue) {
        member(key)
        value.write(into: &out)
    }

    /// An array of objects, each written by `each`.
    public mutating func objects<C: Collection>(_ key: StaticString, _ items: C,
                                                _ each: (C.Element, inout JSONObjectWriter) -> Void) {
        member(key)
        out.append(0x5b)
        var first = true
        for item in items {
            if first { first = false } else { out.append(0x2c) }
            JSONObjectWriter.write(into: &out) { each(item, &$0) }
        }
        out.append(0x5d)
    }
}

extension JSONValue {
    /// A `JSONValue` from text this module wrote (valid by construction).
    static func fromWritten(_ write: (inout [UInt8]) -> Void) -> JSONValue {
        var b: [UInt8] = []
        write(&b)
        do { return try JSONValue.parse(b) } catch { fatalError("invalid JSON written: \(error)") }
    }
}
