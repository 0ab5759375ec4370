/// The `apps:` list of cloudbios.yaml: container images each booted as a
/// microVM of its own (the Apps module runs them). The keys are those of
/// `POST /api/v1/apps`.

/// When an app that ended is started again.
public enum AppRestartPolicy: String, Sendable, Equatable, CaseIterable {
    case no, always
    case onFailure = "on-failure"
}

/// One entry of `apps:`.
public struct AppEntry: Sendable, Equatable {
    public var name: String
    /// `registry/repo:tag` (or `@sha256:…`), or `store:NAME` for an OCI or
    /// docker archive in the image store.
    public var image: String
    public var cmd: [String] = []
    public var env: [String: String] = [:]
    /// Host TCP port → guest port.
    public var ports: [(host: Int, guest: Int)] = []
    /// MiB.
    public var memory: Int = 256
    public var cpus: Int = 1
    public var restart: AppRestartPolicy = .no

    public init(name: String, image: String) { self.name = name; self.image = image }

    public static let memoryRange = 64...65536
    public static let cpuRange = 1...64

    public static func == (a: AppEntry, b: AppEntry) -> Bool {
        a.name == b.name && a.image == b.image && a.cmd == b.cmd && a.env == b.env
            && a.ports.map(\.host) == b.ports.map(\.host) && a.ports.map(\.guest) == b.ports.map(\.guest)
            && a.memory == b.memory && a.cpus == b.cpus && a.restart == b.restart
    }

    /// A variable name as a shell takes it: a letter or `_`, then letters, digits or `_`.
    public static func isEnvName(_ k: String) -> Bool {
        guard let f = k.unicodeScalars.first, f == "_" || (f.isASCII && f.properties.isAlphabetic) else { return false }
        return k.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }

    /// Why `image` cannot name an image (its full grammar is checked when the
    /// app is pulled); nil when it may.
    public static func checkImage(_ image: String) -> String? {
        guard !image.isEmpty, image.utf8.count <= 512 else { return "must be 1 to 512 characters" }
        guard image.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return "must be printable ASCII without spaces" }
        if image.hasPrefix("store:") { return Names.checkImage(String(image.dropFirst(6))).map { "store image name: \($0)" } }
        return nil
    }
}

extension StrictDecoder {
    /// `apps:`: every entry checked, names and host ports unique, no host
    /// port the panel listens on.
    mutating func apps(_ node: Node, panelPort: Int) -> [AppEntry] {
        guard let items = list(node, "apps") else { return [] }
        var out: [AppEntry] = []
        var names: [String: Mark] = [:]
        var hostPorts: [Int: String] = [:]
        for (i, item) in items.enumerated() {
            guard let app = app(item, "apps[\(i)]") else { continue }
            if let prev = names[app.name] { error(item, "duplicate app name '\(app.name)' (first at line \(prev.line))") } else { names[app.name] = item.mark }
            for p in app.ports {
                if p.host == panelPort { error(item, "apps[\(i)] '\(app.name)': host port \(p.host) is the panel's") }
                if let other = hostPorts[p.host] { error(item, "apps[\(i)] '\(app.name)': host port \(p.host) is forwarded to app '\(other)' already") }
                hostPorts[p.host] = app.name
            }
            out.append(app)
        }
        return out
    }

    mutating func app(_ node: Node, _ p: String) -> AppEntry? {
        guard var m = map(node, p) else { return nil }
        defer { finish(m) }
        var ok = true
        var name = ""
        if let n = m["name"], let s = string(n, p + ".name") {
            if let why = Names.checkVM(s) { error(n, "\(p).name '\(Names.clip(s))': \(why)"); ok = false } else { name = s }
        } else if m["name"] == nil {
            error(m.mark, "\(p) needs a name"); ok = false
        } else { ok = false }
        var image = ""
        if let n = m["image"], let s = string(n, p + ".image") {
            if let why = AppEntry.checkImage(s) { error(n, "\(p).image '\(Names.clip(s))': \(why)"); ok = false } else { image = s }
        } else if m["image"] == nil {
            error(m.mark, "\(p) needs an image (registry/repo:tag or store:NAME)"); ok = false
        } else { ok = false }
        var app = AppEntry(name: name, image: image)
        if let n = m["cmd"], let items = list(n, p + ".cmd") {
            for (j, item) in items.enumerated() {
                if let s = string(item, "\(p).cmd[\(j)]") { app.cmd.append(s) } else { ok = false }
            }
        }
        if let n = m["env"] {
            if case .mapping(let pairs) = n.kind {
                for (k, v) in pairs {
                    let key = k.scalarText ?? ""
                    guard AppEntry.isEnvName(key) else { error(k, "\(p).env: '\(Names.clip(key))' is not a variable name"); ok = false; continue }
                    if let s = string(v, "\(p).env.\(key)") { app.env[key] = s } else { ok = false }
                }
            } else if !n.isNull {
                error(n, "\(p).env must be a mapping of NAME: value, not \(n.kindName)"); ok = false
            }
        }
        if let n = m["ports"], let items = list(n, p + ".ports") {
            for (j, item) in items.enumerated() {
                let q = "\(p).ports[\(j)]"
                guard var pm = map(item, q) else { ok = false; continue }
                var host: Int?, guest: Int?
                if let h = pm["host"] { host = int(h, q + ".host", 1...65535) }
                if let g = pm["guest"] { guest = int(g, q + ".guest", 1...65535) }
                if pm["host"] == nil || pm["guest"] == nil { error(item, "\(q) is {host, guest}") }
                finish(pm)
                guard let host, let guest else { ok = false; continue }
                if app.ports.contains(where: { $0.host == host }) { error(item, "\(q): host port \(host) is given twice"); ok = false; continue }
                app.ports.append((host, guest))
            }
        }
        if let n = m["memory"], let v = size(n, p + ".memory", bareUnit: 1 << 20) {
            let mib = Int(v >> 20)
            if v % (1 << 20) != 0 || !AppEntry.memoryRange.contains(mib) {
                error(n, "\(p).memory must be whole MiB from \(AppEntry.memoryRange.lowerBound)M to \(AppEntry.memoryRange.upperBound / 1024)G"); ok = false
            } else { app.memory = mib }
        }
        if let n = m["cpus"] {
            if let v = int(n, p + ".cpus", AppEntry.cpuRange) { app.cpus = v } else { ok = false }
        }
        if let n = m["restart"] {
            if let v = choice(n, p + ".restart", AppRestartPolicy.self) { app.restart = v } else { ok = false }
        }
        return ok ? app : nil
    }
}
