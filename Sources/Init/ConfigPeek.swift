/// The few settings PID 1 needs from `cloudbios.yaml` before the daemon runs
/// (hostname, the display VM, the panel port), read leniently: the daemon
/// and `cloudbios config validate` own the strict reading and its errors.
public struct ConfigPeek: Equatable, Sendable {
    public var hostname: String?
    public var displayVM: String?
    public var panelPort: Int?
    public var vmNames: [String] = []
    /// `console: {vnc: ADDR}`: the host console exported over VNC.
    public var consoleVNC: String?
    /// The config has `install:` (set from the strict reading only).
    public var installs = false

    public init(hostname: String? = nil, displayVM: String? = nil, panelPort: Int? = nil, vmNames: [String] = []) {
        self.hostname = hostname; self.displayVM = displayVM; self.panelPort = panelPort; self.vmNames = vmNames
    }

    public init(yaml: String) {
        var section = ""
        var vmName: String?
        var vmDisplay = false
        var vmItemIndent: Int?
        var vmKeyIndent = -1
        func endVM() {
            if let n = vmName { vmNames.append(n); if vmDisplay && displayVM == nil { displayVM = n } }
            vmName = nil; vmDisplay = false
        }
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = Self.stripComment(raw)
            if line.allSatisfy({ $0 == " " }) { continue }
            let indent = line.prefix { $0 == " " }.count
            var body = Substring(line.dropFirst(indent))
            if indent == 0 {
                if section == "vms" { endVM() }
                guard let (k, v) = Self.keyValue(body) else { section = ""; continue }
                section = v.isEmpty ? k : ""
                if k == "hostname", !v.isEmpty { hostname = v }
                continue
            }
            if section == "vms" {
                // an item starts at the list's own indent; its keys sit two
                // columns further in; deeper lines (disks: …) are not the VM's
                var keyIndent = indent
                if body.hasPrefix("- ") || body == "-" {
                    if vmItemIndent == nil { vmItemIndent = indent }
                    guard indent == vmItemIndent else { continue }
                    endVM()
                    body = body.dropFirst(body == "-" ? 1 : 2)
                    let pad = body.prefix { $0 == " " }.count
                    body = body.dropFirst(pad)
                    keyIndent = indent + 2 + pad
                    vmKeyIndent = keyIndent
                }
                guard keyIndent == vmKeyIndent else { continue }
                if let (k, v) = Self.keyValue(body) {
                    if k == "name", vmName == nil { vmName = v }
                    if k == "display" { vmDisplay = ["true", "yes", "on"].contains(v.lowercased()) }
                }
            } else if section == "panel", let (k, v) = Self.keyValue(body), k == "listen" {
                if let c = v.lastIndex(of: ":") { panelPort = Int(v[v.index(after: c)...]) }
            }
        }
        if section == "vms" { endVM() }
    }

    static func stripComment(_ s: Substring) -> String {
        var out = ""
        var q: Character?
        var prev: Character = " "
        for ch in s {
            if let qq = q { if ch == qq { q = nil } }
            else if ch == "\"" || ch == "'" { q = ch }
            else if ch == "#" && (prev == " " || prev == "\t") { break }
            out.append(ch); prev = ch
        }
        while out.last == " " || out.last == "\r" || out.last == "\t" { out.removeLast() }
        return out
    }

    static func keyValue(_ s: Substring) -> (String, String)? {
        guard let c = s.firstIndex(of: ":") else { return nil }
        let k = s[..<c].trimmingSpaces()
        var v = s[s.index(after: c)...].trimmingSpaces()
        if v.count >= 2, let f = v.first, f == "\"" || f == "'", v.last == f { v = String(v.dropFirst().dropLast()) }
        return (k, v)
    }
}
