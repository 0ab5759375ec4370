import Testing
@testable import Config

#if canImport(Glibc)
import Glibc
#endif

func fixture(_ name: String) throws -> String {
    let path = "\(#filePath)".split(separator: "/").dropLast().joined(separator: "/")
    let f = fopen("/" + path + "/Fixtures/" + name, "r")
    try #require(f != nil)
    defer { fclose(f) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func errors(_ yaml: String) -> [String] {
    do {
        _ = try ConfigLoader.load(path: "c.yaml", text: yaml)
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

@Suite struct ConfigFileTests {
    @Test func fullConfigDecodes() throws {
        let cfg = try ConfigLoader.load(path: "/etc/cb/cloudbios.yaml", text: try fixture("full.yaml"))
        #expect(cfg.hostname == "box1")
        #expect(cfg.baseDirectory == "/etc/cb")
        #expect(cfg.panel.port == 8443 && cfg.panel.host == "0.0.0.0")
        #expect(cfg.panel.users == [PanelUser(name: "admin", passwordHash: "$6$saltsalt$hash")])
        #expect(cfg.images.map(\.name) == ["tiny-kernel", "tiny-initrd", "debian.iso"])
        #expect(cfg.images[0].sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(cfg.vms.count == 2)
        let tiny = cfg.vms[0]
        #expect(tiny.memory == 256 && tiny.kernel == "tiny-kernel" && tiny.append == "console=tty1 console=ttyS0")
        #expect(tiny.autostart && tiny.display && tiny.order == 1)
        let web = cfg.vms[1]
        #expect(web.memory == 2048 && web.firmware == .uefi && web.network == .bridge)
        #expect(web.disks == [.blank(size: 8 << 30), .blank(size: 512 << 20)])
        #expect(cfg.displayVM?.name == "tiny")
        let inst = try #require(cfg.install)
        #expect(inst.disk.serial == "TARGET*")
        #expect(inst.disk.size == SizeConstraint(op: .ge, bytes: 8 << 30))
        #expect(inst.after == .poweroff && !inst.wipe)
    }

    @Test func defaultsApply() throws {
        let cfg = try ConfigLoader.load(path: "c.yaml", text: "version: 1\nvms:\n  - name: a\n")
        #expect(cfg.panel.listen == "0.0.0.0:8443")
        #expect(cfg.panel.tls == .selfSigned)
        #expect(cfg.network.interfaces == .dhcp)
        let vm = cfg.vms[0]
        #expect(vm.memory == 512 && vm.cpus == 1 && vm.network == .nat && vm.accel == .auto && vm.firmware == .bios)
        #expect(!vm.autostart && !vm.display)
    }

    @Test func misspeltKeyNamesLineColumnAndSuggestion() {
        let e = errors("version: 1\nvms:\n  - name: tiny\n    memroy: 256\n")
        #expect(e == ["c.yaml:4:5: unknown key 'memroy' in vms[0] (did you mean 'memory'?)"])
    }

    @Test func everyProblemIsReported() {
        let e = errors("""
        version: 1
        hostnme: x
        vms:
          - name: Bad_Name
          - name: ok
            cpus: 0
            network: natt
        """)
        #expect(e == [
            "c.yaml:2:1: unknown key 'hostnme' (did you mean 'hostname'?)",
            "c.yaml:4:11: VM name 'Bad_Name' must start with a lowercase letter or digit",
            "c.yaml:6:11: vms[1].cpus must be between 1 and 256, not 0",
            "c.yaml:7:14: vms[1].network must be one of nat, bridge, none, not 'natt' (did you mean 'nat'?)",
        ])
    }

    @Test(arguments: [
        ("version: 1\nvms:\n  - name: a\n    memory: -5\n", "4:13"),
        ("version: 1\nvms:\n  - name: a\n    memory: 99999999G\n", "4:13"),
        ("version: 1\nvms:\n  - name: a\n    memory: 8\n", "4:13"),
        ("version: 1\nvms:\n  - name: a,b\n", "3:11"),
        ("version: 1\nvms:\n  - name: ../x\n", "3:11"),
        ("version: 1\nvms:\n  - name: \(String(repeating: "a", count: 80))\n", "3:11"),
        ("version: 1\nvms:\n  - name: a\n    kernel: ../../etc/passwd\n", "4:13"),
        ("version: 1\nvms:\n  - name: a\n    kernel: 'k,file=/etc/shadow'\n", "4:13"),
        // (an image with a size is a copy grown to it; without either there is nothing to make)
        ("version: 1\nvms:\n  - name: a\n    disks: [{id: root}]\n", "4:13"),
        ("version: 1\nvms:\n  - name: a\n    disks: [{size: 1G, id: Root}]\n", "4:28"),
        ("version: 1\nvms:\n  - name: a\n    disks: [{size: 1G, id: a}, {size: 1G, id: a}]\n", "4:47"),
        ("version: 1\nvms:\n  - name: a\n    network: bridge\n    forwards: [{host: 2222, guest: 22}]\n", "5:15"),
        ("version: 1\nvms:\n  - name: a\n    forwards: [{host: 2222, guest: 22}, {host: 2222, guest: 23}]\n", "4:41"),
        ("version: 1\nvms:\n  - name: a\n    forwards: [{host: 70000, guest: 22}]\n", "4:23"),
        ("version: 1\nvms:\n  - name: a\n    cloud_init: {user: root}\n", "4:24"),
        ("version: 1\nvms:\n  - name: a\n    cloud_init: {ssh_authorized_keys: [\"not a key\"]}\n", "4:40"),
        ("version: 1\nvms:\n  - name: a\n    cloud_init: {network: {address: 10.0.0.300/24}}\n", "4:27"),
        ("version: 1\nvms:\n  - name: a\n  - name: a\n", "4:5"),
        ("version: 1\nvms:\n  - name: a\n    display: true\n  - name: b\n    display: true\n", "5:5"),
        ("version: 1\npanel:\n  listen: nowhere\n", "3:11"),
        ("version: 1\npanel:\n  users:\n    - name: admin\n      password_hash: hunter2\n", "4:7"),
        ("version: 1\ninstall:\n  wipe: true\n", "3:3"),
        ("version: 1\ninstall:\n  disk: {size: \"about 8G\"}\n", "3:16"),
        ("version: 2\n", "1:10"),
        ("vms: []\n", "1:1"),
        ("version: 1\n\tvms: []\n", "2:1"),
        ("version: 1\nvms: [\n", "2:1"),
        ("version: 1\nhostname: \"open\n", "2:11"),
        ("version: 1\nversion: 1\n", "2:1"),
        ("version: 1\nimages:\n  - name: k\n    file: a\n    sha256: xyz\n", "5:13"),
        ("version: 1\nvms: &a []\n", "2:6"),
    ])
    func badInputIsRefusedWithPosition(yaml: String, at: String) {
        let e = errors(yaml)
        #expect(!e.isEmpty, "accepted: \(yaml)")
        #expect(e.first.map { $0.hasPrefix("c.yaml:\(at): ") } == true, "\(e)")
    }

    @Test func consoleVNCStaysOnLoopback() throws {
        for address in ["127.0.0.1:5900", "127.0.0.53:5901", "[::1]:5900"] {
            #expect(errors("version: 1\nconsole:\n  vnc: \"\(address)\"\n").isEmpty, "\(address)")
        }
        for address in ["0.0.0.0:5900", "192.168.1.5:5900", "[::]:5900", "localhost:5900", "127.0.0.1.nip.io:5900"] {
            let e = errors("version: 1\nconsole:\n  vnc: \"\(address)\"\n")
            #expect(e.count == 1 && e[0].hasPrefix("c.yaml:3:8: console.vnc must listen on a loopback address"), "\(address): \(e)")
        }
        #expect(try ConfigLoader.load(path: "c.yaml", text: "version: 1\nconsole:\n  vnc: off\n").console.vnc == nil)
    }

    @Test func sizes() {
        #expect(Sizes.parse("256M") == 256 << 20)
        #expect(Sizes.parse("8G") == 8 << 30)
        #expect(Sizes.parse("8GiB") == 8 << 30)
        #expect(Sizes.parse("1.5G") == 3 << 29)
        #expect(Sizes.parse("512", bareUnit: 1 << 20) == 512 << 20)
        #expect(Sizes.parse("-1") == nil)
        #expect(Sizes.parse("0") == nil)
        #expect(Sizes.parse("9999999999T") == nil)
        #expect(Sizes.format(8 << 30) == "8G")
        #expect(Sizes.format(1000) == "1000")
    }

    @Test func installSectionIsRemovedForTheInstalledSystem() throws {
        let text = try fixture("full.yaml")
        let stripped = ConfigLoader.textWithoutInstall(text)
        #expect(!stripped.contains("install:"))
        #expect(!stripped.contains("TARGET*"))
        let cfg = try ConfigLoader.load(path: "c.yaml", text: stripped)
        #expect(cfg.install == nil)
        #expect(cfg.vms.count == 2)
    }

    @Test func yamlForms() throws {
        let cfg = try ConfigLoader.load(path: "c.yaml", text: """
        ---
        version: 1
        vms:
        - name: a            # sequence at the same indentation as its key
          append: >-
            console=ttyS0
            quiet
          kernel: 'k1'
        - {name: b, memory: 1G, disks: [{image: "x.img"}]}
        """)
        #expect(cfg.vms[0].append == "console=ttyS0 quiet")
        #expect(cfg.vms[0].kernel == "k1")
        let n = try YAMLParser.parse("a: 'it''s' # comment\nb: \"x\\ty\"\n", file: "t")
        #expect(JSONValue(node: n) == .object(["a": .string("it's"), "b": .string("x\ty")]))
        #expect(cfg.vms[1].memory == 1024)
        #expect(cfg.vms[1].disks == [.image("x.img")])
    }
}

@Suite struct APIBodyTests {
    @Test func vmRoundTripsThroughJSON() throws {
        var spec = VMSpec(name: "web")
        spec.memory = 1024
        spec.disks = [.blank(size: 8 << 30), .image("base.qcow2")]
        spec.kernel = "k"
        spec.append = "console=ttyS0 \"quoted\""
        let back = try VMSpec.decode(json: spec.json.bytes)
        #expect(back == spec)
    }

    @Test func duplicateJSONKeysAreRefusedWithTheirPlace() {
        #expect {
            try VMSpec.decode(json: Array("{\"name\": \"a\", \"memory\": 256,\n \"memory\": 999999}".utf8))
        } throws: { e in
            (e as? ConfigErrors)?.description == "body:2:2: duplicate key 'memory' (first at line 1, column 15)"
        }
        // the same key in two objects is fine
        #expect(throws: Never.self) { try VMSpec.decode(json: Array(#"{"name": "a", "disks": [{"size": "1G"}, {"size": "2G"}]}"#.utf8)) }
    }

    @Test func statusFieldsAreAcceptedBack() throws {
        var st = VMStatus(spec: VMSpec(name: "a"), state: .running)
        st.pid = 42
        st.cpuPercent = 12.34
        let spec = try VMSpec.decode(json: st.json.bytes)
        #expect(spec == VMSpec(name: "a"))
    }

    @Test(arguments: [
        ("{\"name\": \"a\", \"memroy\": 5}", "body:1:15: unknown key 'memroy' (did you mean 'memory'?)"),
        ("{\"name\": \"a\",", "body:1:14: expected a string key"),
        ("{\"name\": \"../x\"}", "body:1:10: VM name '../x' must start with a lowercase letter or digit"),
        ("{\"name\": \"a\", \"memory\": -1}", "body:1:25: memory must be a size like 512M, 8G or 8GiB"),
        ("{\"name\": \"a\", \"cpus\": 1e9}", "body:1:23: cpus must be a whole number"),
        ("[1,2]", "body:1:1: the VM must be a mapping, not a list"),
        ("{\"name\": \"a\", \"cdrom\": \"x,if=none\"}", "body:1:24: cdrom: image name 'x,if=none' may contain only letters, digits, '.', '_' and '-'"),
    ])
    func hostileBodies(body: String, message: String) {
        #expect(throws: ConfigErrors.self) { try VMSpec.decode(json: Array(body.utf8)) }
        do { _ = try VMSpec.decode(json: Array(body.utf8)) } catch {
            #expect(error.errors.first?.description == message)
        }
    }

    @Test func urlNameMustMatchBody() {
        #expect(throws: ConfigErrors.self) { try VMSpec.decode(json: Array("{\"name\":\"b\"}".utf8), name: "a") }
        #expect((try? VMSpec.decode(json: Array("{\"memory\":256}".utf8), name: "a"))?.name == "a")
    }

    @Test func deepNestingIsRefusedNotCrashed() {
        let deep = String(repeating: "[", count: 10000)
        #expect(throws: ConfigError.self) { try JSONValue.parse(deep) }
    }

    @Test func jsonStringsEscape() throws {
        let v = JSONValue.object(["s": .string("a\"b\\c\n\u{1}é")])
        #expect(v.serialized() == "{\"s\":\"a\\\"b\\\\c\\n\\u0001é\"}")
        #expect(try JSONValue.parse(v.serialized()) == v)
    }

    @Test func installBody() throws {
        let (cfg, dry) = try InstallConfig.decode(json: Array("{\"disk\":{\"serial\":\"T*\"},\"dry_run\":true}".utf8))
        #expect(dry && cfg.disk.serial == "T*" && !cfg.wipe)
        #expect(throws: ConfigErrors.self) { try InstallConfig.decode(json: Array("{\"disk\":{}}".utf8)) }
    }
}

/// Inputs the fuzzers (fuzz/targets) found: each once trapped or put its
/// error outside the text; their bytes are in fuzz/corpus.
@Suite struct FuzzFindingTests {
    /// A backslash ending a line inside a double-quoted value made the end
    /// of the line's content one past the line (an index out of range).
    @Test func backslashEndingALineInQuotesIsReadNotTrapped() throws {
        #expect(try YAMLParser.parse("a \"\\", file: "t").scalarText == "a \"\\")
        #expect(JSONValue(node: try YAMLParser.parse("x: a \"\\", file: "t")) == .object(["x": .string("a \"\\")]))
        #expect(throws: ConfigError.self) { try YAMLParser.parse("- \"x\\", file: "t") }
        #expect(errors("version: 1\nhostname: \"x\\\n") == ["c.yaml:2:13: unterminated escape"])
    }

    /// An empty list item's error is on the item's own line, inside it (it
    /// was on the list's first line, past the end of the item's).
    @Test func emptyListItemIsReportedOnItsLine() {
        #expect(errors("version: 1\nvms:\n  - name: a\n  -\n") == ["c.yaml:4:4: vms[1] needs a name"])
        #expect(errors("version: 1\nvms:\n  -\n") == ["c.yaml:3:4: vms[0] needs a name"])
    }

    /// An invalid escape is reported at its backslash: after the escaped
    /// character it was past the end of the line when that was a newline.
    @Test func invalidEscapeIsReportedAtItsBackslash() {
        let newline = #expect(throws: ConfigError.self) { try JSONParser.parse(Array("{\"g}a\\\n".utf8), file: "b") }
        #expect(newline?.description == "b:1:6: invalid escape '\\\\xa'")
        let letter = #expect(throws: ConfigError.self) { try JSONParser.parse(Array("[\"ok\",\n \"\\q\"]".utf8), file: "b") }
        #expect(letter?.description == "b:2:3: invalid escape '\\q'")
    }
}
