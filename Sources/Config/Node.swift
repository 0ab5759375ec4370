/// A position in a source text, 1-based.
public struct Mark: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
    public var description: String { "\(line):\(column)" }
}

/// A parsed document node (from YAML or JSON), with where it came from.
public struct Node: Sendable, Equatable {
    public enum ScalarStyle: Sendable, Equatable { case plain, singleQuoted, doubleQuoted }
    public indirect enum Kind: Sendable, Equatable {
        case scalar(String, ScalarStyle)
        case sequence([Node])
        case mapping([(Node, Node)])

        public static func == (a: Kind, b: Kind) -> Bool {
            switch (a, b) {
            case let (.scalar(x, s), .scalar(y, t)): return x == y && s == t
            case let (.sequence(x), .sequence(y)): return x == y
            case let (.mapping(x), .mapping(y)):
                return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            default: return false
            }
        }
    }
    public var kind: Kind
    public var mark: Mark

    public init(_ kind: Kind, _ mark: Mark) { self.kind = kind; self.mark = mark }

    public var scalarText: String? { if case .scalar(let s, _) = kind { return s }; return nil }
    public var isNull: Bool {
        if case .scalar(let s, .plain) = kind { return s == "" || s == "null" || s == "~" }
        return false
    }
    public var kindName: String {
        switch kind {
        case .scalar: return isNull ? "null" : "a scalar"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}

/// One problem in a config file or request body: `FILE:LINE:COL: message`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var mark: Mark
    public var message: String
    public init(file: String, mark: Mark, message: String) { self.file = file; self.mark = mark; self.message = message }
    public var description: String { "\(file):\(mark.line):\(mark.column): \(message)" }
}

/// Every problem found, in source order.
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(_ errors: [ConfigError]) { self.errors = errors.sorted { ($0.mark.line, $0.mark.column) < ($1.mark.line, $1.mark.column) } }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
