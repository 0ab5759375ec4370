import Config

/// One message from QEMU's QMP monitor.
public enum QMPMessage: Sendable, Equatable {
    /// `{"QMP": {"version": …, "capabilities": […]}}`
    case greeting(JSONValue)
    /// `{"return": …, "id": …}`
    case reply(id: Int?, JSONValue)
    /// `{"error": {"class": …, "desc": …}, "id": …}`
    case error(id: Int?, QMPError)
    /// `{"event": NAME, "data": …, "timestamp": …}`
    case event(QMPEvent)
}

public struct QMPEvent: Sendable, Equatable {
    public var name: String
    public var data: JSONValue
    public init(name: String, data: JSONValue = .object([:])) { self.name = name; self.data = data }
}

public struct QMPError: Error, Sendable, Equatable, CustomStringConvertible {
    public var errorClass: String
    public var desc: String
    public init(errorClass: String, desc: String) { self.errorClass = errorClass; self.desc = desc }
    public var description: String { "QMP \(errorClass): \(desc)" }
}

/// QMP framing: JSON objects separated by CRLF/LF on a stream socket.
public enum QMPCodec {
    /// `{"execute": NAME, "arguments": …, "id": N}` plus a newline.
    public static func encode(command: String, arguments: JSONValue? = nil, id: Int) -> [UInt8] {
        var o: [String: JSONValue] = ["execute": .string(command), "id": .int(id)]
        if let arguments { o["arguments"] = arguments }
        return Array((JSONValue.object(o).serialized() + "\r\n").utf8)
    }

    public static func decode(_ line: [UInt8]) throws(QEMUError) -> QMPMessage {
        let v: JSONValue
        do { v = try JSONValue.parse(line) } catch { throw .invalid("QMP: malformed message: \(error)") }
        guard case .object(let o) = v else { throw .invalid("QMP: message is not an object") }
        let id = o["id"]?.intValue
        if let g = o["QMP"] { return .greeting(g) }
        if let r = o["return"] { return .reply(id: id, r) }
        if let e = o["error"] {
            return .error(id: id, QMPError(errorClass: e["class"]?.stringValue ?? "GenericError",
                                           desc: e["desc"]?.stringValue ?? "unknown error"))
        }
        if let name = o["event"]?.stringValue { return .event(QMPEvent(name: name, data: o["data"] ?? .object([:]))) }
        throw .invalid("QMP: unknown message")
    }
}

/// Splits a byte stream into lines (QMP sends one JSON object per line).
public struct LineBuffer: Sendable {
    private var pending: [UInt8] = []
    /// Lines longer than this are a protocol error (a runaway peer).
    public var maxLine = 16 << 20

    public init() {}

    /// Appends bytes and returns every complete line (without CR/LF; blank lines dropped).
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(QEMUError) -> [[UInt8]] {
        pending.append(contentsOf: bytes)
        var lines: [[UInt8]] = []
        var start = 0
        for i in pending.indices where pending[i] == 0x0a {
            var end = i
            if end > start && pending[end - 1] == 0x0d { end -= 1 }
            if end > start { lines.append(Array(pending[start..<end])) }
            start = i + 1
        }
        pending.removeFirst(start)
        if pending.count > maxLine { throw .invalid("QMP: line longer than \(maxLine) bytes") }
        return lines
    }
}
