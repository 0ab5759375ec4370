import Config

/// Fuzz target `yaml`: any bytes as a `cloudbios.yaml` and as a `users.yaml`,
/// through the YAML parser and the strict decoder, as PID 1 and the daemon
/// read them. Checked: nothing traps; every error names a line and column
/// inside the text; users that parse render to text that parses back to the
/// same users; a string quoted for YAML reads back unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzYAML(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    let lines = text.utf8.split(separator: 0x0a, omittingEmptySubsequences: false)

    func checkMarks(_ errors: ConfigErrors) {
        for e in errors.errors {
            let m = e.mark
            guard m.line >= 1, m.column >= 1, m.line <= max(lines.count, 1),
                  m.column <= (lines.isEmpty ? 0 : lines[m.line - 1].count) + 1
            else { fatalError("error outside the text (\(lines.count) lines): \(e)") }
        }
    }

    do {
        let node = try YAMLParser.parse(text, file: "f")
        _ = JSONValue(node: node).serialized()
    } catch {
        checkMarks(ConfigErrors([error]))
    }
    do {
        _ = try ConfigLoader.load(path: "/c/cloudbios.yaml", text: text)
    } catch {
        checkMarks(error)
    }
    _ = ConfigLoader.textWithoutInstall(text)
    do {
        let users = try LocalUsers.parse(path: "users.yaml", text: text)
        let again: [PanelUser]
        do { again = try LocalUsers.parse(path: "users.yaml", text: LocalUsers.render(users)) } catch {
            fatalError("rendered users do not parse: \(error)")
        }
        guard again == users else { fatalError("users changed through render: \(users) → \(again)") }
    } catch {
        checkMarks(error)
    }
    do {
        let node = try YAMLParser.parse("k: " + YAMLText.quoted(text) + "\n", file: "q")
        guard case .mapping(let pairs) = node.kind, pairs.count == 1, pairs[0].1.scalarText == text else {
            fatalError("quoted text read back differently: \(node)")
        }
    } catch {
        fatalError("quoted text does not parse: \(error)")
    }
    return 0
}
