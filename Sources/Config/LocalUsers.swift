/// The panel users made on this machine — by the first-run setup or the host
/// console's menu — kept in `users.yaml` beside `cloudbios.yaml` (on the
/// installed config partition or a CBCONFIG volume) or in RAM. CloudBIOS
/// never rewrites the user's own `cloudbios.yaml`; the panel accepts the
/// users of both files.
///
/// ```yaml
/// users:
///   - name: admin
///     password_hash: "$6$…"
///     ssh_authorized_keys: ["ssh-ed25519 AAAA… me@laptop"]
/// ```
public enum LocalUsers {
    public static let fileName = "users.yaml"

    /// Parses a `users.yaml`; every problem as FILE:LINE:COL: message.
    public static func parse(path: String, text: String) throws(ConfigErrors) -> [PanelUser] {
        let node: Node
        do { node = try YAMLParser.parse(text, file: path) } catch { throw ConfigErrors([error]) }
        var d = StrictDecoder(file: path)
        var users: [PanelUser] = []
        if var m = d.map(node, "") {
            if let n = m["users"] { users = d.users(n, "users") }
            d.finish(m)
        }
        if !d.errors.isEmpty { throw ConfigErrors(d.errors) }
        return users
    }

    /// The file's text for `users` (which `parse` reads back unchanged).
    public static func render(_ users: [PanelUser]) -> String {
        var out = "# Panel users made on this machine (first-run setup, host console).\n"
        out += "# Managed by CloudBIOS; cloudbios.yaml's panel.users are accepted too.\n"
        out += users.isEmpty ? "users: []\n" : "users:\n"
        for u in users {
            out += "  - name: \(YAMLText.quoted(u.name))\n"
            out += "    password_hash: \(YAMLText.quoted(u.passwordHash))\n"
            if !u.sshAuthorizedKeys.isEmpty {
                out += "    ssh_authorized_keys:\n"
                for k in u.sshAuthorizedKeys { out += "      - \(YAMLText.quoted(k))\n" }
            }
        }
        return out
    }
}

/// YAML text CloudBIOS writes.
public enum YAMLText {
    /// A double-quoted scalar (quotes, backslashes and newlines escaped),
    /// which the strict parser reads back to the same string.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}
