/// Decoding of `cloudbios.yaml` and of API bodies into the model.
public enum ConfigLoader {
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
        if let n = m["backups"] { cfg.backups = backups(n) }
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
                    for r in refs where !defined.contains(r) && Names.checkImage(r) == nil {
                        error(items[i].mark, "vms[\(i)] '\(vm.name)' uses image '\(r)', which is not in images:")
                    }
                }
            }
        }
        if let n = m["apps"] { cfg.apps = apps(n, panelPort: cfg.panel.port) }
        if let n = m["install"] { cfg.install = install(n) }
        if let n = m["cluster"] { cfg.cluster = cluster(n) }
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

    /// `cloud_init:` of a VM; `at` gets the node of each field
    /// (`cloud_init.user`), where its problems are reported.
    mutating func cloudInit(_ node: Node, _ path: String, at: inout [String: Node]) -> CloudInitSpec? {
        guard var m = map(node, path) else { return nil }
        var c = CloudInitSpec()
        func field(_ key: String) -> Node? {
            let n = m[key]
            if let n { at["cloud_init." + key] = n }
            return n
        }
        if let n = field("hostname") { c.hostname = string(n, path + ".hostname") }
        if let n = field("user") { c.user = string(n, path + ".user") }
        if let n = field("password_hash") { c.passwordHash = string(n, path + ".password_hash") }
        if let n = m["ssh_authorized_keys"] { c.sshAuthorizedKeys = sshKeys(n, path + ".ssh_authorized_keys") }
        if let n = field("network") {
            if case .scalar = n.kind {
                if string(n, path + ".network") != "dhcp" { error(n, "\(path).network must be dhcp or {address, gateway, dns}") }
            } else if var nm = map(n, path + ".network") {
                let address = nm["address"].flatMap { string($0, path + ".network.address") }
                let gateway = nm["gateway"].flatMap { string($0, path + ".network.gateway") }
                var dns: [String] = []
                if let dn = nm["dns"], let ds = list(dn, path + ".network.dns") {
                    for d in ds {
                        guard let s = string(d, path + ".network.dns") else { continue }
                        at["cloud_init.network.dns[\(dns.count)]"] = d
                        dns.append(s)
                    }
                }
                finish(nm)
                // without an address the rules say what it must be
                c.network = .staticIPv4(address: address ?? "", gateway: gateway, dns: dns)
            }
        }
        if let n = field("user_data") { c.userData = string(n, path + ".user_data") }
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

    /// A VM (an entry of `vms:`, or an API body). Its keys are decoded
    /// here; its rules are `VMSpec.problems()`, each reported at the node
    /// it is about.
    mutating func vm(_ node: Node, _ path: String, nameOverride: String?) -> VMSpec? {
        guard var m = map(node, path.isEmpty ? "the VM" : path) else { return nil }
        m.path = path
        defer { finish(m) }
        let p = path.isEmpty ? "" : path + "."
        /// The node of each field (`memory`, `disks[1].id`; the VM's own for "").
        var at: [String: Node] = ["": node]
        /// List entries (`disks[1]`) with a value that did not decode: the
        /// error says what is wrong with them, their rules are moot.
        var broken: Set<String> = []
        func field(_ key: String) -> Node? {
            let n = m[key]
            if let n { at[key] = n }
            return n
        }
        var name: String?
        if let nn = field("name") {
            if let s = string(nn, p + "name") {
                if let o = nameOverride, o != s, Names.checkVM(s) == nil {
                    error(nn, "name '\(s)' does not match the VM '\(o)' in the URL")
                } else { name = s }
            }
        } else if let o = nameOverride {
            name = o
        } else {
            error(node, "\(path.isEmpty ? "the VM" : path) needs a name")
        }
        var spec = VMSpec(name: name ?? "invalid")
        if let n = field("memory"), let v = size(n, p + "memory", bareUnit: 1 << 20) {
            // whole MiB, unless it is out of bounds anyway (the rules say so)
            if v % (1 << 20) != 0 && VMLimits.memoryMiB.contains(Int(v >> 20)) { error(n, "\(p)memory must be a whole number of MiB") } else { spec.memory = Int(v >> 20) }
        }
        if let n = field("cpus"), let v = int(n, p + "cpus") { spec.cpus = v }
        if let n = field("kernel") { spec.kernel = string(n, p + "kernel") }
        if let n = field("initrd") { spec.initrd = string(n, p + "initrd") }
        if let n = field("append") { spec.append = string(n, p + "append") }
        if let n = field("cdrom"), !n.isNull { spec.cdrom = string(n, p + "cdrom") }
        if let n = field("disks"), let items = list(n, p + "disks") {
            for (i, item) in items.enumerated() {
                let dp = "disks[\(i)]"
                at[dp] = item
                var disk = DiskSpec()
                let before = errors.count
                if var dm = map(item, p + dp) {
                    if let x = dm["id"] { at[dp + ".id"] = x; disk.id = string(x, p + dp + ".id") }
                    if let x = dm["size"] { at[dp + ".size"] = x; disk.size = size(x, p + dp + ".size", bareUnit: 1) }
                    if let x = dm["image"] { at[dp + ".image"] = x; disk.image = string(x, p + dp + ".image") }
                    if errors.count > before { broken.insert(dp) }
                    finish(dm)
                } else {
                    broken.insert(dp)
                }
                spec.disks.append(disk)
            }
        }
        if let n = m["cloud_init"], !n.isNull { spec.cloudInit = cloudInit(n, p + "cloud_init", at: &at) }
        if let n = field("forwards"), let items = list(n, p + "forwards") {
            for (i, item) in items.enumerated() {
                let fp = "forwards[\(i)]"
                at[fp] = item
                var host: Int?, guest: Int?, proto = PortForward.Proto.tcp
                let before = errors.count
                if var fm = map(item, p + fp) {
                    let hn = fm["host"], gn = fm["guest"]
                    if let hn { at[fp + ".host"] = hn; host = int(hn, p + fp + ".host") }
                    if let gn { at[fp + ".guest"] = gn; guest = int(gn, p + fp + ".guest") }
                    if let x = fm["proto"], let v = choice(x, p + fp + ".proto", PortForward.Proto.self) { proto = v }
                    if hn == nil || gn == nil { error(item, "\(p + fp) needs host and guest ports, e.g. {host: 2222, guest: 22}") }
                    if errors.count > before { broken.insert(fp) }
                    finish(fm)
                } else {
                    broken.insert(fp)
                }
                spec.forwards.append(PortForward(host: host ?? 0, guest: guest ?? 0, proto: proto))
            }
        }
        if let n = m["agent"], let v = bool(n, p + "agent") { spec.agent = v }
        if let n = m["boot"], let items = list(n, p + "boot") {
            var order: [BootDevice] = []
            for item in items {
                guard let d = choice(item, p + "boot", BootDevice.self) else { continue }
                at["boot[\(order.count)]"] = item
                order.append(d)
            }
            spec.boot = order
        }
        if let n = m["firmware"], let v = choice(n, p + "firmware", Firmware.self) { spec.firmware = v }
        if let n = m["network"], let v = choice(n, p + "network", NetworkMode.self) { spec.network = v }
        if let n = m["accel"], let v = choice(n, p + "accel", Accel.self) { spec.accel = v }
        if let n = m["autostart"], let v = bool(n, p + "autostart") { spec.autostart = v }
        if let n = field("order"), let v = int(n, p + "order") { spec.order = v }
        if let n = m["display"], let v = bool(n, p + "display") { spec.display = v }
        if let n = m["backup"], let v = bool(n, p + "backup") { spec.backup = v }
        if let n = m["template"], let v = bool(n, p + "template") { spec.template = v }
        for problem in spec.problems() where !broken.contains(where: { problem.field == $0 || problem.field.hasPrefix($0 + ".") }) {
            var message = problem.namesItself ? problem.message : p + problem.message
            if let first = problem.firstAt.flatMap({ at[$0] }) { message += " (first at line \(first.mark.line))" }
            error(at[problem.field] ?? node, message)
            if problem.field == "name" { name = nil }
        }
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
