/// The `cluster:` section: this node's place in a fleet whose state lives in
/// etcd (one etcd member per node).
///
/// ```yaml
/// cluster:
///   name: lab
///   node: node1                     # default: the hostname
///   address: 10.0.0.11              # what the other nodes reach
///   members: [10.0.0.11, 10.0.0.12, 10.0.0.13]   # the first etcd members
///   token: "…"                      # shared secret: etcd TLS and node-to-node trust derive from it
/// ```
public struct ClusterConfig: Sendable, Equatable {
    /// The fleet's name (`[a-z0-9-]`, like a VM's): part of every etcd key.
    public var name: String
    /// This node's name; nil: the hostname.
    public var node: String?
    /// The IPv4 address the other nodes reach this one at; nil: the first
    /// global IPv4 address of the host.
    public var address: String?
    /// The addresses of the first etcd members (the initial cluster).
    public var members: [String]
    /// The shared secret (at least 16 characters).
    public var token: String

    public init(name: String, node: String? = nil, address: String? = nil, members: [String], token: String) {
        self.name = name; self.node = node; self.address = address; self.members = members; self.token = token
    }

    public static let minimumTokenLength = 16
}

extension Names {
    /// Node names: the rules of VM names (`[a-z0-9][a-z0-9-]{0,62}`).
    public static func checkNode(_ name: String) -> String? { checkLabel(name, "node name") }

    /// `[a-z0-9][a-z0-9-]{0,62}`, said of `what`.
    public static func checkLabel(_ name: String, _ what: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty else { return "\(what) is empty" }
        guard u.count <= 63 else { return "\(what) '\(clip(name))' is longer than 63 characters" }
        guard isLowerAlnum(u[0]) else { return "\(what) '\(clip(name))' must start with a lowercase letter or digit" }
        guard u.allSatisfy({ isLowerAlnum($0) || $0 == UInt8(ascii: "-") }) else {
            return "\(what) '\(clip(name))' may contain only a-z, 0-9 and '-'"
        }
        return nil
    }
}

extension StrictDecoder {
    mutating func cluster(_ node: Node) -> ClusterConfig? {
        guard var m = map(node, "cluster") else { return nil }
        defer { finish(m) }
        var ok = true
        let name = m["name"].flatMap { n -> String? in
            guard let s = string(n, "cluster.name") else { return nil }
            if let e = Names.checkLabel(s, "cluster name") { error(n, "cluster.name: " + e); return nil }
            return s
        }
        let nodeName = m["node"].flatMap { n -> String? in
            guard let s = string(n, "cluster.node") else { return nil }
            if let e = Names.checkNode(s) { error(n, "cluster.node: " + e); ok = false; return nil }
            return s
        }
        let address = m["address"].flatMap { n -> String? in
            guard let s = string(n, "cluster.address") else { return nil }
            if !IPv4.isAddress(s) { error(n, "cluster.address '\(Names.clip(s))' must be an IPv4 address"); ok = false; return nil }
            return s
        }
        var members: [String] = []
        if let n = m["members"], let items = list(n, "cluster.members") {
            for item in items {
                guard let s = string(item, "cluster.members") else { ok = false; continue }
                if !IPv4.isAddress(s) { error(item, "cluster.members: '\(Names.clip(s))' must be an IPv4 address"); ok = false; continue }
                if members.contains(s) { error(item, "cluster.members: '\(s)' is listed twice"); ok = false; continue }
                members.append(s)
            }
            if items.isEmpty { error(n, "cluster.members needs at least one address"); ok = false }
        }
        let token = m["token"].flatMap { n -> String? in
            guard let s = string(n, "cluster.token") else { return nil }
            if s.utf8.count < ClusterConfig.minimumTokenLength {
                error(n, "cluster.token must be at least \(ClusterConfig.minimumTokenLength) characters"); return nil
            }
            return s
        }
        if name == nil, m["name"] == nil { error(node, "cluster needs name"); ok = false }
        if m["members"] == nil { error(node, "cluster needs members (the addresses of the first nodes)"); ok = false }
        if token == nil, m["token"] == nil { error(node, "cluster needs token (a shared secret of at least \(ClusterConfig.minimumTokenLength) characters)"); ok = false }
        guard ok, let name, let token else { return nil }
        return ClusterConfig(name: name, node: nodeName, address: address, members: members, token: token)
    }
}

extension ClusterConfig {
    /// The `cluster:` section of a node joining the fleet through `member`
    /// (YAML, every value quoted), as `cloudbios cluster join` and the
    /// panel's join add it to cloudbios.yaml.
    public static func joiningSection(fleet: String, member: String, token: String, node: String?, address: String?) -> String {
        func quoted(_ s: String) -> String { JSONValue.string(s).serialized() }
        var section = "cluster:\n  name: \(quoted(fleet))\n"
        if let node { section += "  node: \(quoted(node))\n" }
        if let address { section += "  address: \(quoted(address))\n" }
        section += "  members: [\(quoted(member))]\n  token: \(quoted(token))\n"
        return section
    }

    /// Whether the YAML text has a top-level `cluster:` section.
    public static func hasSection(_ text: String) -> Bool {
        text.split(separator: "\n").contains { $0.hasPrefix("cluster:") }
    }

    /// The YAML text with its `cluster:` section added at the end.
    public static func adding(_ section: String, to text: String) -> String {
        text + (text.isEmpty || text.hasSuffix("\n") ? "" : "\n") + section
    }

    /// The YAML text without its top-level `cluster:` section.
    /// (A comment at the left margin stays in the section only when the
    /// section goes on after it: one before the next key is that key's.)
    public static func removingSection(from text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        func indented(_ l: Substring) -> Bool { l.first == " " || l.first == "\t" }
        func isComment(_ l: Substring) -> Bool { l.first == "#" }
        var out: [Substring] = []
        var skipping = false
        for (i, line) in lines.enumerated() {
            if line.hasPrefix("cluster:") { skipping = true; continue }
            if skipping {
                if line.isEmpty || indented(line) { continue }
                if isComment(line), let next = lines[(i + 1)...].first(where: { !$0.isEmpty && !isComment($0) }), indented(next) { continue }
                skipping = false
            }
            out.append(line)
        }
        return out.joined(separator: "\n")
    }
}
