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
        var out = ""
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    public var bytes: [UInt8] { Array(serialized().utf8) }

    private func write(into out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d): out += JSONValue.formatNumber(d)
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                v.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.writeString(k, into: &out)
                out += pretty ? ": " : ":"
                o[k]!.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    static func formatNumber(_ d: Double) -> String {
        if !d.isFinite { return "null" }
        if d.rounded() == d && abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
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
        out += "\""
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
