/// A JSON value: what the API sends and QMP speaks. Objects serialize with
/// sorted keys, so output is deterministic.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public static func int(_ v: Int) -> JSONValue { .number(Double(v)) }
    public static func int64(_ v: Int64) -> JSONValue { .number(Double(v)) }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var doubleValue: Double? { if case .number(let d) = self { return d }; return nil }
    public var intValue: Int? {
        if case .number(let d) = self, d.rounded() == d, abs(d) < 9.0e15 { return Int(d) }
        return nil
    }
    public var int64Value: Int64? { intValue.map(Int64.init) }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { self == .null }

    // MARK: serialization

    public func serialized(pretty: Bool = false) -> String {
        String(decoding: bytes(pretty: pretty), as: UTF8.self)
    }

    public var bytes: [UInt8] { bytes(pretty: false) }

    /// The UTF-8 text, written straight into bytes.
    public func bytes(pretty: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    /// The compact text, appended to `out`.
    func write(into out: inout [UInt8]) { write(into: &out, pretty: false, indent: 0) }

    private func write(into out: inout [UInt8], pretty: Bool, indent: Int) {
        switch self {
        case .null: out.append(contentsOf: JSONValue.nullText)
        case .bool(let b): out.append(contentsOf: b ? JSONValue.trueText : JSONValue.falseText)
        case .number(let d): JSONValue.writeNumber(d, into: &out)
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out.append(0x5b); out.append(0x5d); return }
            out.append(0x5b)
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(0x2c) }
                if pretty { JSONValue.newline(indent + 1, into: &out) }
                v.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { JSONValue.newline(indent, into: &out) }
            out.append(0x5d)
        case .object(let o):
            if o.isEmpty { out.append(0x7b); out.append(0x7d); return }
            out.append(0x7b)
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(0x2c) }
                if pretty { JSONValue.newline(indent + 1, into: &out) }
                JSONValue.writeString(k, into: &out)
                out.append(0x3a)
                if pretty { out.append(0x20) }
                o[k]!.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { JSONValue.newline(indent, into: &out) }
            out.append(0x7d)
        }
    }

    static let nullText = Array("null".utf8), trueText = Array("true".utf8), falseText = Array("false".utf8)

    private static func newline(_ indent: Int, into out: inout [UInt8]) {
        out.append(0x0a)
        for _ in 0..<indent { out.append(0x20); out.append(0x20) }
    }

    static func formatNumber(_ d: Double) -> String {
        if !d.isFinite { return "null" }
        if d.rounded() == d && abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    /// `formatNumber`'s text; whole numbers are written digit by digit.
    static func writeNumber(_ d: Double, into out: inout [UInt8]) {
        guard d.isFinite, d.rounded() == d, abs(d) < 1e15 else {
            out.append(contentsOf: formatNumber(d).utf8)
            return
        }
        var n = Int64(d)
        if n < 0 { out.append(0x2d); n = -n }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            repeat {
                buf[15 - count] = 0x30 + UInt8(n % 10)
                n /= 10
                count += 1
            } while n > 0
            out.append(contentsOf: buf[(16 - count)...])
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped,
    /// and U+2028/U+2029 (line breaks to JavaScript); the rest as is.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { u in
            var run = 0   // start of the bytes not yet copied
            var i = 0
            while i < u.count {
                let c = u[i]
                var escape: [UInt8]? = nil
                var width = 1
                switch c {
                case 0x22: escape = [0x5c, 0x22]
                case 0x5c: escape = [0x5c, 0x5c]
                case 0x0a: escape = [0x5c, 0x6e]
                case 0x0d: escape = [0x5c, 0x72]
                case 0x09: escape = [0x5c, 0x74]
                case 0..<0x20, 0x7f: escape = unicodeEscape(UInt32(c))
                case 0xe2 where i + 2 < u.count && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9):
                    escape = unicodeEscape(u[i + 2] == 0xa8 ? 0x2028 : 0x2029)
                    width = 3
                default: break
                }
                if let escape {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: u[run..<i]))
                    out.append(contentsOf: escape)
                    run = i + width
                }
                i += width
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[run..<u.count]))
        }
        out.append(0x22)
    }

    private static func unicodeEscape(_ v: UInt32) -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        return [0x5c, 0x75, hex[Int(v >> 12 & 15)], hex[Int(v >> 8 & 15)], hex[Int(v >> 4 & 15)], hex[Int(v & 15)]]
    }

    // MARK: parsing

    /// Parses JSON text (RFC 8259). Errors carry line and column.
    public static func parse(_ bytes: [UInt8]) throws(ConfigError) -> JSONValue {
        try JSONValue(node: JSONParser.parse(bytes, file: "json"))
    }

    public static func parse(_ text: String) throws(ConfigError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Converts a parsed node (JSON or YAML) into a value.
    public init(node: Node) {
        switch node.kind {
        case .scalar(let s, let style):
            if style != .plain { self = .string(s); return }
            switch s {
            case "null", "~", "": self = .null
            case "true": self = .bool(true)
            case "false": self = .bool(false)
            default:
                if let d = Double(s) { self = .number(d) } else { self = .string(s) }
            }
        case .sequence(let items): self = .array(items.map(JSONValue.init(node:)))
        case .mapping(let pairs):
            var o: [String: JSONValue] = [:]
            for (k, v) in pairs { o[k.scalarText ?? ""] = JSONValue(node: v) }
            self = .object(o)
        }
    }
}

/// Types that render themselves as API JSON.
public protocol JSONRepresentable {
    var json: JSONValue { get }
}
