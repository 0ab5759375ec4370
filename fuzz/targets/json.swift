import Config

/// Fuzz target `json`: any bytes as a JSON document and as the API's VM and
/// install bodies. Checked: nothing traps; every error names a line and
/// column inside the input; a value that parses serializes (compact and
/// pretty) to text that parses back to the same value, non-finite numbers
/// (`1e999`) becoming null as the encoder writes them; a VM that decodes
/// renders (as GET answers) to JSON that decodes (as PUT reads) to the same VM.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
    let lines = bytes.split(separator: 0x0a, omittingEmptySubsequences: false)

    func checkMarks(_ errors: [ConfigError]) {
        for e in errors {
            let m = e.mark
            guard m.line >= 1, m.column >= 1, m.line <= lines.count, m.column <= lines[m.line - 1].count + 1
            else { fatalError("error outside the input (\(lines.count) lines): \(e)") }
        }
    }

    do {
        let v = try JSONValue.parse(bytes)
        let expected = finite(v)
        for pretty in [false, true] {
            let text = v.serialized(pretty: pretty)
            let again: JSONValue
            do { again = try JSONValue.parse(text) } catch { fatalError("serialized value does not parse: \(error)\n\(text)") }
            guard again == expected else { fatalError("value changed through serialization:\n\(v)\n\(again)") }
        }
    } catch {
        checkMarks([error])
    }
    do {
        let spec = try VMSpec.decode(json: bytes)
        let text = spec.json.bytes
        let again: VMSpec
        do { again = try VMSpec.decode(json: text) } catch {
            fatalError("a decoded VM's JSON does not decode: \(error)\n\(String(decoding: text, as: UTF8.self))")
        }
        guard again == spec else { fatalError("VM changed through its JSON:\n\(spec)\n\(again)") }
    } catch {
        checkMarks(error.errors)
    }
    do {
        _ = try InstallConfig.decode(json: bytes)
    } catch {
        checkMarks(error.errors)
    }
    return 0
}

/// The value as its serialization reads back: infinities are written as null.
private func finite(_ v: JSONValue) -> JSONValue {
    switch v {
    case .number(let d) where !d.isFinite: .null
    case .array(let a): .array(a.map(finite))
    case .object(let o): .object(o.mapValues(finite))
    default: v
    }
}
