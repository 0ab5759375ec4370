/// Decoding of `cloudbios.yaml` and of API bodies into the model.
public enum ConfigLoader {
    public static let maxMemoryMiB = 1 << 20        // 1 TiB
    public static let maxDiskBytes: Int64 = 64 << 40 // 64 TiB
    public static let maxCPUs = 256

    /// Loads and validates a config file. Throws every problem found.
    public static func load(path: String, text: String) throws(ConfigErrors) -> CloudBIOSConfig {
        let node: Node
        do { node = try YAMLParser.parse(text, file: path) } catch { throw ConfigErrors([error]) }
        var d = StrictDecoder(file: path)
        var cfg = d.config(node)
        cfg.baseDirectory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        if cfg.baseDirectory.isEmpty { cfg.baseDirectory = "/" }
        if !d.errors.isEmpty { throw ConfigErrors(d.errors) }
        return cfg
    }

    /// The config text without its top-level `install:` section (what an
    /// installed system keeps), comments and layout preserved.
    public static func textWithoutInstall(_ text: String) -> String {
        var out: [Substring] = []
        var skipping = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let top = !(line.first == " " || line.first == "\t" || line.first == "#" || line.isEmpty)
            if top { skipping = line.hasPrefix("install:") }
            if !skipping { out.append(line) }
        }
        return out.joined(separator: "\n")
    }
}

extension VMSpec {
    /// Decodes a VM from a JSON request body (the same rules as `vms:` in the
    /// file). `name` overrides or supplies the name (PUT /vms/{name}).
    public static func decode(json: [UInt8], file: String = "body", name: String? = nil) throws(ConfigErrors) -> VMSpec {
        let node: Node
        do { node = try JSONParser.parse(json, file: file) } catch { throw ConfigErrors([error]) }
        var d = StrictDecoder(file: file)
        let spec = d.vm(node, "", nameOverride: name)
        if !d.errors.isEmpty || spec == nil { throw ConfigErrors(d.errors.isEmpty ? [ConfigError(file: file, mark: node.mark, message: "invalid VM")] : d.errors) }
        return spec!
    }

    /// Validates a spec built in code (same rules as decoding); nil when fine.
    public func validationError() -> String? {
        if let e = Names.checkVM(name) { return e }
        if !(16...ConfigLoader.maxMemoryMiB).contains(memory) { return "memory must be between 16 and \(ConfigLoader.maxMemoryMiB) MiB" }
        if !(1...ConfigLoader.maxCPUs).contains(cpus) { return "cpus must be between 1 and \(ConfigLoader.maxCPUs)" }
        for n in [kernel, initrd, cdrom].compactMap({ $0 }) { if let e = Names.checkImage(n) { return e } }
        for d in disks { if let n = d.image, let e = Names.checkImage(n) { return e } }
        var ids = Set<String>()
        for d in disks {
            if let id = d.id {
                if let e = Names.checkDiskID(id) { return e }
                if !ids.insert(id).inserted { return "disk id '\(id)' is used twice" }
            }
            if d.image == nil && d.size == nil { return "a disk needs a size or an image" }
        }
        if !forwards.isEmpty && network != .nat { return "forwards need network: nat" }
        if let a = append, let e = Names.checkAppend(a) { return e }
        if initrd != nil && kernel == nil { return "initrd needs kernel" }
        if append != nil && kernel == nil { return "append needs kernel" }
        return nil
    }
}

extension InstallConfig {
    /// Decodes the body of `POST /api/v1/install` (`disk`, `wipe`, `after`,
    /// `webhook`, plus `dry_run`).
    public static func decode(json: [UInt8], file: String = "body") throws(ConfigErrors) -> (InstallConfig, dryRun: Bool) {
        let node: Node
        do { node = try JSONParser.parse(json, file: file) } catch { throw ConfigErrors([error]) }
        var d = StrictDecoder(file: file)
        var dry = false
        var cfg = InstallConfig()
        if var m = d.map(node, "") {
            if let n = m["dry_run"], let b = d.bool(n, "dry_run") { dry = b }
            cfg = d.installBody(&m, "")
            d.finish(m)
        }
        if !d.errors.isEmpty { throw ConfigErrors(d.errors) }
        return (cfg, dry)
    }
}

extension StrictDecoder {
    mutating func config(_ node: Node) -> CloudBIOSConfig {
        var cfg = CloudBIOSConfig()
        guard var m = map(node, "") else { return cfg }
        if let n = m["version"] {
            if let v = int(n, "version", 1...1000), v != 1 { error(n, "unsupported config version \(v) (this CloudBIOS reads version 1)") }
        } else {
            error(m.mark, "missing 'version: 1'")
        }
        if let n = m["hostname"], let s = string(n, "hostname") {
            if Self.validHostname(s) { cfg.hostname = s } else { error(n, "hostname '\(Names.clip(s))' is not a valid host name (letters, digits, '-', up to 63 characters)") }
        }
        if let n = m["panel"] { cfg.panel = panel(n) }
        if let n = m["network"] { cfg.network = network(n) }
        if let n = m["console"] { cfg.console = console(n) }
        if let n = m["images"], let items = list(n, "images") {
            var seen: [String: Mark] = [:]
            for (i, item) in items.enumerated() {
                guard let img = image(item, "images[\(i)]") else { continue }
                if let prev = seen[img.name] { error(item, "duplicate image name '\(img.name)' (first at line \(prev.line))") } else { seen[img.name] = item.mark }
                cfg.images.append(img)
            }
        }
        if let n = m["vms"], let items = list(n, "vms") {
            var seen: [String: Mark] = [:]
            var displayAt: Mark?
            for (i, item) in items.enumerated() {
                guard let vm = vm(item, "vms[\(i)]", nameOverride: nil) else { continue }
                if let prev = seen[vm.name] { error(item, "duplicate VM name '\(vm.name)' (first at line \(prev.line))") } else { seen[vm.name] = item.mark }
                if vm.display {
                    if let d = displayAt { error(item, "only one VM can have display: true (another at line \(d.line))") } else { displayAt = item.mark }
                }
                cfg.vms.append(vm)
            }
            // images referenced by VMs must be defined when the config defines images
            let defined = Set(cfg.images.map(\.name))
            if !cfg.images.isEmpty {
                for (i, vm) in cfg.vms.enumerated() {
                    var refs = [vm.kernel, vm.initrd, vm.cdrom].compactMap { $0 }
                    refs += vm.disks.compactMap(\.image)
                    for r in refs where !defined.contains(r) {
                        error(items[i].mark, "vms[\(i)] '\(vm.name)' uses image '\(r)', which is not in images:")
                    }
                }
            }
        }
        if let n = m["install"] { cfg.install = install(n) }
        finish(m)
        return cfg
    }

    static func validHostname(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty, u.count <= 63, u.first != UInt8(ascii: "-"), u.last != UInt8(ascii: "-") else { return false }
        return u.allSatisfy { Names.isAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    mutating func panel(_ node: Node) -> PanelConfig {
        var p = PanelConfig()
        guard var m = map(node, "panel") else { return p }
        if let n = m["listen"], let s = string(n, "panel.listen") {
            if HostPort.parse(s) != nil { p.listen = s } else { error(n, "panel.listen '\(Names.clip(s))' must be HOST:PORT, e.g. 0.0.0.0:8443") }
        }
        if let n = m["tls"] {
            if case .scalar = n.kind {
                if let s = string(n, "panel.tls") {
                    switch s {
                    case "self-signed": p.tls = .selfSigned
                    case "off": p.tls = .off
                    default: error(n, "panel.tls must be self-signed, off, or {cert: PATH, key: PATH}")
                    }
                }
            } else if var t = map(n, "panel.tls") {
                let cert = t["cert"].flatMap { string($0, "panel.tls.cert") }
                let key = t["key"].flatMap { string($0, "panel.tls.key") }
                if let cert, let key { p.tls = .files(cert: cert, key: key) } else { error(n, "panel.tls needs both cert and key") }
                finish(t)
            }
        }
        if let n = m["users"] { p.users = users(n, "panel.users") }
        finish(m)
        return p
    }

    /// A list of panel users (`panel.users` in the config, `users` in the
    /// machine's own `users.yaml`).
    mutating func users(_ n: Node, _ path: String) -> [PanelUser] {
        var out: [PanelUser] = []
        guard let items = list(n, path) else { return out }
        var seen = Set<String>()
        for (i, item) in items.enumerated() {
            guard var u = map(item, "\(path)[\(i)]") else { continue }
            let name = u["name"].flatMap { string($0, "\(path)[\(i)].name") }
            let hash = u["password_hash"].flatMap { string($0, "\(path)[\(i)].password_hash") }
            let keys = u["ssh_authorized_keys"].map { sshKeys($0, "\(path)[\(i)].ssh_authorized_keys") } ?? []
            finish(u)
            guard let name else { error(item, "\(path)[\(i)] needs a name"); continue }
            if let e = Names.checkUser(name) { error(item, e); continue }
            guard let hash else { error(item, "\(path)[\(i)] '\(name)' needs password_hash (make one with 'cloudbios passwd')"); continue }
            if !Names.isCryptHash(hash) {
                error(item, "\(path)[\(i)].password_hash must be a crypt(3) hash ($6$… sha512-crypt or $y$… yescrypt); make one with 'cloudbios passwd'")
                continue
            }
            if !seen.insert(name).inserted { error(item, "duplicate user '\(name)'"); continue }
            out.append(PanelUser(name: name, passwordHash: hash, sshAuthorizedKeys: keys))
        }
        return out
    }

    /// A list of OpenSSH public keys, each checked.
    mutating func sshKeys(_ n: Node, _ path: String) -> [String] {
        var keys: [String] = []
        for k in list(n, path) ?? [] {
            guard let s = string(k, path) else { continue }
            if let e = Names.checkSSHKey(s) { error(k, e) } else { keys.append(s) }
        }
        return keys
    }

    /// `cloud_init:` of a VM.
    mutating func cloudInit(_ node: Node, _ path: String) -> CloudInitSpec? {
        guard var m = map(node, path) else { return nil }
        var c = CloudInitSpec()
        if let n = m["hostname"], let s = string(n, path + ".hostname") {
            if Self.validHostname(s) { c.hostname = s } else { error(n, "\(path).hostname '\(Names.clip(s))' is not a valid host name") }
        }
        if let n = m["user"], let s = string(n, path + ".user") {
            if let e = Names.checkGuestUser(s) { error(n, "\(path).\(e)") } else { c.user = s }
        }
        if let n = m["password_hash"], let s = string(n, path + ".password_hash") {
            if Names.isCryptHash(s) { c.passwordHash = s } else { error(n, "\(path).password_hash must be a crypt(3) hash ($6$… or $y$…; 'cloudbios passwd' makes one)") }
        }
        if let n = m["ssh_authorized_keys"] { c.sshAuthorizedKeys = sshKeys(n, path + ".ssh_authorized_keys") }
        if let n = m["network"] {
            if case .scalar = n.kind {
                if string(n, path + ".network") != "dhcp" { error(n, "\(path).network must be dhcp or {address, gateway, dns}") }
            } else if var nm = map(n, path + ".network") {
                let address = nm["address"].flatMap { string($0, path + ".network.address") }
                let gateway = nm["gateway"].flatMap { string($0, path + ".network.gateway") }
                var dns: [String] = []
                if let dn = nm["dns"], let ds = list(dn, path + ".network.dns") {
                    for d in ds { if let s = string(d, path + ".network.dns"), Self.validIPv4(s) { dns.append(s) } else { error(d, "\(path).network.dns entries must be IPv4 addresses") } }
                }
                finish(nm)
                if let address, Self.validCIDR(address) {
                    if let gateway, !Self.validIPv4(gateway) { error(n, "\(path).network.gateway must be an IPv4 address") }
                    else { c.network = .staticIPv4(address: address, gateway: gateway, dns: dns) }
                } else {
                    error(n, "\(path).network.address must be an IPv4 CIDR like 10.213.0.10/24")
                }
            }
        }
        if let n = m["user_data"], let s = string(n, path + ".user_data") {
            if s.utf8.count > 64 << 10 { error(n, "\(path).user_data is larger than 64 KiB") } else { c.userData = s }
        }
        finish(m)
        return c
    }

    mutating func network(_ node: Node) -> NetworkConfig {
        var net = NetworkConfig()
        guard var m = map(node, "network") else { return net }
        if let n = m["interfaces"] {
            if case .scalar = n.kind {
                if string(n, "network.interfaces") != "dhcp" { error(n, "network.interfaces must be 'dhcp' or a list of interfaces") }
            } else if let items = list(n, "network.interfaces") {
                var ifs: [InterfaceConfig] = []
                for (i, item) in items.enumerated() {
                    if let ic = interface(item, "network.interfaces[\(i)]") { ifs.append(ic) }
                }
                checkInterfaces(ifs, items, n)
                net.interfaces = .list(ifs)
            }
        }
        if let n = m["bridge_port"], let s = string(n, "network.bridge_port") {
            if s.utf8.count <= 15, s.utf8.allSatisfy({ Names.isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) { net.bridgePort = s } else { error(n, "network.bridge_port must be an interface name") }
        }
        finish(m)
        return net
    }

    /// One entry of `network.interfaces`.
    mutating func interface(_ item: Node, _ path: String) -> InterfaceConfig? {
        guard var im = map(item, path) else { return nil }
        defer { finish(im) }
        let match = im["match"].flatMap { string($0, path + ".match") }
        let name = im["name"].flatMap { n -> String? in
            guard let s = string(n, path + ".name") else { return nil }
            if let problem = Names.checkInterface(s) { error(n, "\(path).name: \(problem)"); return nil }
            return s
        }
        var ic: InterfaceConfig
        switch (match, name) {
        case (let match?, nil): ic = InterfaceConfig(match: match)
        case (nil, let name?): ic = InterfaceConfig(name: name)
        case (.some, .some): error(item, "\(path) has both match (NICs) and name (a bond or VLAN): give one"); return nil
        case (nil, nil):
            if im["name"] == nil { error(item, "\(path) needs match (an interface name or MAC address glob), or name with bond or vlan") }
            return nil
        }
        if let b = im["bond"], var bm = map(b, path + ".bond") {
            var members: [String] = []
            if let mn = bm["members"], let ms = list(mn, path + ".bond.members") {
                for x in ms { if let g = string(x, path + ".bond.members") { members.append(g) } }
                if members.isEmpty { error(mn, "\(path).bond.members must name at least one NIC") }
            } else if bm["members"] == nil {
                error(b, "\(path).bond needs members (NIC name or MAC globs)")
            }
            var bond = BondConfig(members: members)
            if let mo = bm["mode"], let s = string(mo, path + ".bond.mode") {
                if BondConfig.modes.contains(s) { bond.mode = s } else {
                    var msg = "\(path).bond.mode must be one of \(BondConfig.modes.joined(separator: ", ")), not '\(Names.clip(s))'"
                    if let g = Suggest.closest(s, in: BondConfig.modes) { msg += " (did you mean '\(g)'?)" }
                    error(mo, msg)
                }
            }
            finish(bm)
            ic.bond = bond
        }
        if let v = im["vlan"], var vm = map(v, path + ".vlan") {
            let link = vm["link"].flatMap { n -> String? in
                guard let s = string(n, path + ".vlan.link") else { return nil }
                if let problem = Names.checkInterface(s) { error(n, "\(path).vlan.link: \(problem)"); return nil }
                return s
            }
            let id = vm["id"].flatMap { int($0, path + ".vlan.id", 1...4094) }
            if vm["link"] == nil { error(v, "\(path).vlan needs link (the interface it is tagged on)") }
            if vm["id"] == nil { error(v, "\(path).vlan needs id (1 to 4094)") }
            finish(vm)
            if let link, let id { ic.vlan = VLANConfig(link: link, id: id) }
        }
        if ic.name != nil && ic.bond == nil && ic.vlan == nil && im["bond"] == nil && im["vlan"] == nil {
            error(item, "\(path) with name must be a bond (bond: {members}) or a VLAN (vlan: {link, id})")
        }
        if ic.match != nil && (ic.bond != nil || ic.vlan != nil) {
            error(item, "\(path): a bond or VLAN is made under a name, not match")
        }
        var addresses: [(String, Node)] = []
        if let a = im["address"], let s = string(a, path + ".address") { addresses.append((s, a)) }
        if let a = im["addresses"], let xs = list(a, path + ".addresses") {
            if im["address"] != nil { error(a, "\(path) has both address and addresses: use addresses") }
            for x in xs { if let s = string(x, path + ".addresses") { addresses.append((s, x)) } }
        }
        for (s, n) in addresses {
            if Self.validCIDR(s) || IPv6.isCIDR(s) { ic.addresses.append(s) } else {
                error(n, "\(path): '\(Names.clip(s))' is not an address with its prefix length, like 192.0.2.10/24 or 2001:db8::10/64")
            }
        }
        let hasV4 = ic.addresses.contains { Self.validCIDR($0) }
        ic.dhcp = !hasV4
        if let dn = im["dhcp"], let b = bool(dn, path + ".dhcp") {
            if b && hasV4 { error(dn, "\(path) has both dhcp: true and an IPv4 address") }
            ic.dhcp = b
        }
        if let g = im["gateway"], let s = string(g, path + ".gateway") {
            if !Self.validIPv4(s) { error(g, "\(path).gateway must be an IPv4 address") }
            else if !hasV4 { error(g, "\(path).gateway needs an IPv4 address on the interface (DHCP brings its own)") }
            else if !ic.addresses.contains(where: { IPv4.isInSubnet(s, of: $0) }) {
                error(g, "\(path).gateway \(s) is outside the interface's subnets (\(ic.addresses.filter { Self.validCIDR($0) }.joined(separator: ", ")))")
            } else { ic.gateway = s }
        }
        if let g = im["gateway6"], let s = string(g, path + ".gateway6") {
            if !IPv6.isAddress(s) { error(g, "\(path).gateway6 must be an IPv6 address") }
            else {
                let v6 = ic.addresses.filter(IPv6.isCIDR)
                let linkLocal = (IPv6.groups(s)?.first ?? 0) & 0xffc0 == 0xfe80
                if !linkLocal && !v6.contains(where: { IPv6.isInSubnet(s, of: $0) }) {
                    error(g, "\(path).gateway6 \(s) is neither link-local nor inside the interface's IPv6 prefixes")
                } else { ic.gateway6 = s }
            }
        }
        if let dn = im["dns"], let ds = list(dn, path + ".dns") {
            for x in ds {
                if let s = string(x, path + ".dns"), Self.validIPv4(s) || IPv6.isAddress(s) { ic.dns.append(s) } else { error(x, "\(path).dns entries must be IPv4 or IPv6 addresses") }
            }
        }
        if let mn = im["mtu"] { ic.mtu = int(mn, path + ".mtu", 576...65535) }
        return ic
    }

    /// What only the whole list can tell: names unique, VLAN links known,
    /// NICs in one bond only, and at least one way to an address.
    mutating func checkInterfaces(_ ifs: [InterfaceConfig], _ items: [Node], _ listNode: Node) {
        var names: Set<String> = []
        for (i, ic) in ifs.enumerated() {
            let node = i < items.count ? items[i] : listNode
            if let n = ic.name {
                if !names.insert(n).inserted { error(node, "network.interfaces: '\(n)' is named twice") }
            }
        }
        for (i, ic) in ifs.enumerated() {
            let node = i < items.count ? items[i] : listNode
            if let v = ic.vlan, !names.contains(v.link), v.link.contains(where: { "*?[".contains($0) }) {
                error(node, "network.interfaces[\(i)].vlan.link must be an interface name, not a glob")
            }
            if let v = ic.vlan, let target = ifs.first(where: { $0.name == v.link }), target.vlan != nil {
                error(node, "network.interfaces[\(i)].vlan.link '\(v.link)' is a VLAN itself")
            }
        }
        // an empty list, or one where nothing asks for an address, leaves the
        // machine unreachable: refused rather than guessed
        if !ifs.contains(where: { $0.dhcp || !$0.addresses.isEmpty }) {
            error(listNode, "network.interfaces gives no interface an address (no dhcp: true, no address): the machine would be unreachable")
        }
    }

    static func validIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in p.count <= 3 && Int(p).map { (0...255).contains($0) } == true }
    }

    static func validCIDR(_ s: String) -> Bool {
        let p = s.split(separator: "/")
        guard p.count == 2, validIPv4(String(p[0])), let len = Int(p[1]), (0...32).contains(len) else { return false }
        return true
    }

    mutating func console(_ node: Node) -> ConsoleConfig {
        var c = ConsoleConfig()
        guard var m = map(node, "console") else { return c }
        if let n = m["vnc"] {
            if case .scalar(let s, .plain) = n.kind, s == "off" || s == "false" || n.isNull {
                c.vnc = nil
            } else if let s = string(n, "console.vnc") {
                if let hp = HostPort.parse(s) {
                    // the export has no password: only this machine may reach it
                    if hp.isLoopback { c.vnc = s } else {
                        error(n, "console.vnc must listen on a loopback address (127.0.0.1 or [::1]), not '\(hp.host)': the host console's VNC has no password; reach it through an SSH tunnel")
                    }
                } else {
                    error(n, "console.vnc must be off or HOST:PORT, e.g. 127.0.0.1:5900")
                }
            }
        }
        finish(m)
        return c
    }

    mutating func image(_ node: Node, _ path: String) -> ImageSource? {
        guard var m = map(node, path) else { return nil }
        defer { finish(m) }
        guard let nn = m["name"], let name = string(nn, path + ".name") else { error(node, "\(path) needs a name"); return nil }
        if let e = Names.checkImage(name) { error(nn, e); return nil }
        var img = ImageSource(name: name)
        if let n = m["file"], let s = string(n, path + ".file") {
            if s.isEmpty || s.contains("\0") { error(n, "\(path).file is empty") } else { img.file = s }
        }
        if let n = m["url"], let s = string(n, path + ".url") {
            if s.hasPrefix("http://") || s.hasPrefix("https://") { img.url = s } else { error(n, "\(path).url must start with http:// or https://") }
        }
        if let n = m["sha256"], let s = string(n, path + ".sha256") {
            if let e = Names.checkSHA256(s.lowercased()) { error(n, "\(path): \(e)") } else { img.sha256 = s.lowercased() }
        }
        if img.file == nil && img.url == nil { error(node, "\(path) '\(name)' needs file or url") }
        if img.file != nil && img.url != nil { error(node, "\(path) '\(name)' has both file and url; give one") }
        return img
    }

    mutating func imageRef(_ node: Node, _ path: String) -> String? {
        guard let s = string(node, path) else { return nil }
        if let e = Names.checkImage(s) { error(node, "\(path): \(e)"); return nil }
        return s
    }

    mutating func vm(_ node: Node, _ path: String, nameOverride: String?) -> VMSpec? {
        guard var m = map(node, path.isEmpty ? "the VM" : path) else { return nil }
        m.path = path
        defer { finish(m) }
        let p = path.isEmpty ? "" : path + "."
        var name: String?
        if let nn = m["name"] {
            if let s = string(nn, p + "name") {
                if let e = Names.checkVM(s) { error(nn, e) } else if let o = nameOverride, o != s {
                    error(nn, "name '\(s)' does not match the VM '\(o)' in the URL")
                } else { name = s }
            }
        } else if let o = nameOverride {
            name = o
        } else {
            error(node, "\(path.isEmpty ? "the VM" : path) needs a name")
        }
        var spec = VMSpec(name: name ?? "invalid")
        if let n = m["memory"], let v = size(n, p + "memory", bareUnit: 1 << 20, max: Int64(ConfigLoader.maxMemoryMiB) << 20) {
            if v < 16 << 20 { error(n, "\(p)memory must be at least 16 MiB") } else if v % (1 << 20) != 0 { error(n, "\(p)memory must be a whole number of MiB") } else { spec.memory = Int(v >> 20) }
        }
        if let n = m["cpus"], let v = int(n, p + "cpus", 1...ConfigLoader.maxCPUs) { spec.cpus = v }
        if let n = m["kernel"] { spec.kernel = imageRef(n, p + "kernel") }
        if let n = m["initrd"] { spec.initrd = imageRef(n, p + "initrd") }
        if let n = m["append"], let s = string(n, p + "append") {
            if let e = Names.checkAppend(s) { error(n, "\(p)\(e)") } else { spec.append = s }
        }
        if let n = m["cdrom"], !n.isNull { spec.cdrom = imageRef(n, p + "cdrom") }
        if let n = m["disks"], let items = list(n, p + "disks") {
            if items.count > 16 { error(n, "\(p)disks: at most 16 disks") }
            var ids: [String: Mark] = [:]
            for (i, item) in items.enumerated() {
                let dp = "\(p)disks[\(i)]"
                guard var dm = map(item, dp) else { continue }
                let sz = dm["size"]
                let im = dm["image"]
                let idn = dm["id"]
                finish(dm)
                var disk = DiskSpec()
                if let idn, let s = string(idn, dp + ".id") {
                    if let e = Names.checkDiskID(s) { error(idn, "\(dp).\(e)") }
                    else if let prev = ids[s] { error(idn, "\(dp).id '\(s)' is used twice (first at line \(prev.line))") }
                    else { disk.id = s; ids[s] = idn.mark }
                }
                if let sz, let v = size(sz, dp + ".size", bareUnit: 1, max: ConfigLoader.maxDiskBytes) {
                    if v < 1 << 20 { error(sz, "\(dp).size must be at least 1M") } else { disk.size = v }
                }
                if let im { disk.image = imageRef(im, dp + ".image") }
                if sz == nil && im == nil { error(item, "\(dp) needs a size (a blank disk) or an image (a copy of a store image)"); continue }
                spec.disks.append(disk)
            }
        }
        if let n = m["cloud_init"], !n.isNull { spec.cloudInit = cloudInit(n, p + "cloud_init") }
        if let n = m["forwards"], let items = list(n, p + "forwards") {
            var seen: [String: Mark] = [:]
            for (i, item) in items.enumerated() {
                let fp = "\(p)forwards[\(i)]"
                guard var fm = map(item, fp) else { continue }
                let hn = fm["host"], gn = fm["guest"]
                let host = hn.flatMap { int($0, fp + ".host", 1...65535) }
                let guest = gn.flatMap { int($0, fp + ".guest", 1...65535) }
                let proto = fm["proto"].flatMap { choice($0, fp + ".proto", PortForward.Proto.self) } ?? .tcp
                finish(fm)
                if hn == nil || gn == nil { error(item, "\(fp) needs host and guest ports, e.g. {host: 2222, guest: 22}") }
                guard let host, let guest else { continue }
                let key = "\(proto.rawValue)/\(host)"
                if let prev = seen[key] { error(item, "\(fp): host port \(proto.rawValue) \(host) is forwarded twice (first at line \(prev.line))"); continue }
                seen[key] = item.mark
                spec.forwards.append(PortForward(host: host, guest: guest, proto: proto))
            }
        }
        if let n = m["agent"], let v = bool(n, p + "agent") { spec.agent = v }
        if let n = m["boot"], let items = list(n, p + "boot") {
            var order: [BootDevice] = []
            for item in items {
                guard let d = choice(item, p + "boot", BootDevice.self) else { continue }
                if order.contains(d) { error(item, "\(p)boot names \(d.rawValue) twice") } else { order.append(d) }
            }
            spec.boot = order
        }
        if let n = m["firmware"], let v = choice(n, p + "firmware", Firmware.self) { spec.firmware = v }
        if let n = m["network"], let v = choice(n, p + "network", NetworkMode.self) { spec.network = v }
        if let n = m["accel"], let v = choice(n, p + "accel", Accel.self) { spec.accel = v }
        if let n = m["autostart"], let v = bool(n, p + "autostart") { spec.autostart = v }
        if let n = m["order"], let v = int(n, p + "order", -100000...100000) { spec.order = v }
        if let n = m["display"], let v = bool(n, p + "display") { spec.display = v }
        if !spec.forwards.isEmpty && spec.network != .nat, let n = m["forwards"] {
            error(n, "\(p)forwards need network: nat (a bridged VM is reached at its own address)")
        }
        if spec.initrd != nil && spec.kernel == nil { error(node, "\(p)initrd needs kernel") }
        if spec.append != nil && spec.kernel == nil { error(node, "\(p)append needs kernel") }
        // read-only keys the API returns; accepted so a GET body can be PUT back
        for k in ["state", "pid", "message", "accel_in_use", "cpu_percent", "memory_used_mib", "uptime_seconds", "addresses", "node"] { _ = m[k] }
        return name == nil ? nil : spec
    }

    mutating func install(_ node: Node) -> InstallConfig? {
        guard var m = map(node, "install") else { return nil }
        let cfg = installBody(&m, "install.")
        finish(m)
        return cfg
    }

    mutating func installBody(_ m: inout Map, _ p: String) -> InstallConfig {
        var cfg = InstallConfig()
        if let n = m["disk"] {
            if var dm = map(n, p + "disk") {
                var sel = DiskSelector()
                if let x = dm["path"] { sel.path = string(x, p + "disk.path") }
                if let x = dm["by_id"] { sel.byID = string(x, p + "disk.by_id") }
                if let x = dm["serial"] { sel.serial = string(x, p + "disk.serial") }
                if let x = dm["model"] { sel.model = string(x, p + "disk.model") }
                if let x = dm["ssd"] { sel.ssd = bool(x, p + "disk.ssd") }
                if let x = dm["size"], let s = string(x, p + "disk.size") {
                    if let c = Self.sizeConstraint(s) { sel.size = c } else { error(x, "\(p)disk.size must be a comparison like \">= 8G\"") }
                }
                finish(dm)
                if dm.pairs.isEmpty { error(n, "\(p)disk needs at least one of path, by_id, serial, model, size, ssd") }
                cfg.disk = sel
            }
        } else {
            error(m.mark, "\(p.isEmpty ? "" : "install ")needs disk: a selector (path, by_id, serial, model, size, ssd)")
        }
        if let n = m["wipe"], let b = bool(n, p + "wipe") { cfg.wipe = b }
        if let n = m["after"], let v = choice(n, p + "after", AfterInstall.self) { cfg.after = v }
        if let n = m["webhook"], let s = string(n, p + "webhook") {
            if s.hasPrefix("http://") || s.hasPrefix("https://") { cfg.webhook = s } else { error(n, "\(p)webhook must be an http:// or https:// URL") }
        }
        return cfg
    }

    static func sizeConstraint(_ s: String) -> SizeConstraint? {
        let t = s.trimmingSpaces()
        for op in [SizeConstraint.Op.ge, .le, .eq, .gt, .lt] where t.hasPrefix(op.rawValue) {
            guard let b = Sizes.parse(String(t.dropFirst(op.rawValue.count)), bareUnit: 1) else { return nil }
            return SizeConstraint(op: op, bytes: b)
        }
        return Sizes.parse(t, bareUnit: 1).map { SizeConstraint(op: .eq, bytes: $0) }
    }
}
