import Testing
import Config
@testable import QEMU
#if canImport(Glibc)
import Glibc
#endif

/// Golden command lines, one argument per line (as Proxmox's cfg2cmd tests).
/// `CLOUDBIOS_UPDATE_GOLDEN=1 swift test --filter ArgvGolden` rewrites them.
@Suite struct ArgvGoldenTests {
    static let goldenDir: String = {
        let file = String(#filePath)
        return String(file[..<file.lastIndex(of: "/")!]) + "/Golden"
    }()

    static let tcgHost = HostFacts(kvmUsable: false, kvmReason: "/dev/kvm hangs",
                                   ovmfCode: "/usr/share/OVMF/OVMF_CODE_4M.fd",
                                   ovmfVarsTemplate: "/usr/share/OVMF/OVMF_VARS_4M.fd",
                                   nat: .user(reason: "no bridge"))
    static let kvmHost = HostFacts(kvmUsable: true, kvmReason: "works",
                                   ovmfCode: "/usr/share/OVMF/OVMF_CODE_4M.fd",
                                   ovmfVarsTemplate: "/usr/share/OVMF/OVMF_VARS_4M.fd",
                                   nat: .bridge("cbnat0"), physicalBridge: "vmbr0")

    static func spec(_ name: String, _ edit: (inout VMSpec) -> Void) -> VMSpec {
        var s = VMSpec(name: name)
        edit(&s)
        return s
    }

    static let cases: [(String, VMSpec, HostFacts)] = [
        ("kernel-tcg", spec("tiny") {
            $0.memory = 256; $0.kernel = "tiny-kernel"; $0.initrd = "tiny-initrd"
            $0.append = "console=tty1 console=ttyS0,115200 quiet"
        }, tcgHost),
        ("disks-kvm-nat-bridge", spec("web-1") {
            $0.memory = 2048; $0.cpus = 4
            $0.disks = [.blank(size: 8 << 30), .image("debian-12.qcow2")]
        }, kvmHost),
        ("uefi-cdrom-bridge", spec("installer") {
            $0.firmware = .uefi; $0.cdrom = "debian-12.5.0-amd64-netinst.iso"
            $0.disks = [.blank(size: 20 << 30)]; $0.network = .bridge
        }, kvmHost),
        ("no-network-forced-tcg", spec("offline") {
            $0.network = .none; $0.accel = .tcg; $0.cdrom = "rescue.iso"
        }, kvmHost),
        // a cloud image with ids, cloud-init and forwards on user networking
        ("cloud-image-forwards-user-nat", spec("web1") {
            $0.memory = 1024; $0.cpus = 2
            $0.disks = [.image("debian-12", size: 8 << 30, id: "root"), .blank(size: 20 << 30, id: "data")]
            var c = CloudInitSpec(); c.sshAuthorizedKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"]
            $0.cloudInit = c
            $0.forwards = [PortForward(host: 2222, guest: 22), PortForward(host: 5353, guest: 53, proto: .udp)]
        }, tcgHost),
        ("agent-off", spec("quiet") { $0.agent = false; $0.disks = [.blank(size: 1 << 30, id: "only")] }, tcgHost),
    ]

    @Test(arguments: cases.map { $0.0 })
    func golden(_ name: String) throws {
        let (_, spec, host) = Self.cases.first { $0.0 == name }!
        let argv = try QEMUCommand.argv(spec: spec, host: host,
                                        paths: VMPaths(stateDir: "/var/lib/cloudbios", name: spec.name),
                                        images: ImageResolver(directory: "/var/lib/cloudbios/images"))
        try expectGolden(argv, at: "\(Self.goldenDir)/\(name).args")
    }

    @Test func tcgFallbackExplainsWhy() throws {
        let (name, reason) = try QEMUCommand.accel(for: VMSpec(name: "a"), host: Self.tcgHost)
        #expect(name == "tcg")
        #expect(reason.contains("/dev/kvm hangs"))
    }

    @Test func kvmRequestedButUnusableIsRefused() {
        var s = VMSpec(name: "a")
        s.accel = .kvm
        #expect(throws: QEMUError.self) {
            try QEMUCommand.argv(spec: s, host: Self.tcgHost, paths: VMPaths(stateDir: "/s", name: "a"),
                                 images: ImageResolver(directory: "/s/images"))
        }
    }

    @Test(arguments: ["../x", "a,b", "A", String(repeating: "a", count: 80), "", "x/y", "-drive"])
    func badVMNamesAreRefused(_ name: String) {
        #expect(throws: QEMUError.self) {
            try QEMUCommand.argv(spec: VMSpec(name: name), host: Self.tcgHost,
                                 paths: VMPaths(stateDir: "/s", name: name), images: ImageResolver(directory: "/s/images"))
        }
    }

    @Test(arguments: ["../../etc/shadow", "a,file=/etc/shadow", "x/../y", ".hidden", "a b", "-kernel"])
    func optionInjectionThroughImageNamesIsRefused(_ image: String) {
        var s = VMSpec(name: "a")
        s.cdrom = image
        #expect(throws: QEMUError.self) {
            try QEMUCommand.argv(spec: s, host: Self.tcgHost, paths: VMPaths(stateDir: "/s", name: "a"),
                                 images: ImageResolver(directory: "/s/images"))
        }
        var t = VMSpec(name: "a")
        t.disks = [.image(image)]
        #expect(throws: QEMUError.self) {
            try QEMUCommand.argv(spec: t, host: Self.tcgHost, paths: VMPaths(stateDir: "/s", name: "a"),
                                 images: ImageResolver(directory: "/s/images"))
        }
    }

    /// The command line is built only for a spec without problems
    /// (`VMSpec.problems()`): the first one is what the refusal says.
    @Test func aSpecBreakingARuleIsRefusedWithTheRulesMessage() {
        var s = VMSpec(name: "a")
        s.memory = 8
        s.forwards = [PortForward(host: 0, guest: 22)]
        #expect(throws: QEMUError.invalid("memory must be at least 16 MiB")) {
            try QEMUCommand.argv(spec: s, host: Self.tcgHost, paths: VMPaths(stateDir: "/s", name: "a"),
                                 images: ImageResolver(directory: "/s/images"))
        }
        s.memory = 256
        #expect(throws: QEMUError.invalid(s.problems()[0].message)) {
            try QEMUCommand.argv(spec: s, host: Self.tcgHost, paths: VMPaths(stateDir: "/s", name: "a"),
                                 images: ImageResolver(directory: "/s/images"))
        }
        #expect(s.problems().map(\.field) == ["forwards[0].host"])
    }

    @Test(arguments: ["/srv/a,b", "relative/dir", "/srv/a b", "/srv/../etc"])
    func oddStateDirsAreRefused(_ dir: String) {
        #expect(throws: QEMUError.self) {
            try QEMUCommand.argv(spec: VMSpec(name: "a"), host: Self.tcgHost, paths: VMPaths(stateDir: dir, name: "a"),
                                 images: ImageResolver(directory: dir + "/images"))
        }
    }

    @Test func commasAreDoubled() {
        #expect(QEMUCommand.escape("a,b,,c") == "a,,b,,,,c")
    }

    @Test func noOptionValueHasAStrayComma() throws {
        // every option value we build must parse back into the keys we meant
        for (_, spec, host) in Self.cases {
            let argv = try QEMUCommand.argv(spec: spec, host: host, paths: VMPaths(stateDir: "/var/lib/cloudbios", name: spec.name),
                                            images: ImageResolver(directory: "/var/lib/cloudbios/images"))
            for (i, a) in argv.enumerated() where ["-drive", "-chardev", "-netdev", "-device"].contains(argv[max(0, i - 1)]) {
                for part in a.split(separator: ",") where i > 0 {
                    #expect(part.contains("=") || ["socket", "file", "tap", "user"].contains(String(part)) || !part.contains("/"),
                            "suspicious option part '\(part)' in \(a)")
                }
            }
        }
    }

    @Test func macAndTapAreStableAndShort() {
        #expect(QEMUCommand.mac(for: "tiny") == QEMUCommand.mac(for: "tiny"))
        #expect(QEMUCommand.mac(for: "tiny") != QEMUCommand.mac(for: "tinz"))
        #expect(QEMUCommand.tapName(for: String(repeating: "a", count: 63)).utf8.count <= 15)
    }
}

/// `argv`, one argument per line, is the golden file at `path`
/// (`CLOUDBIOS_UPDATE_GOLDEN` set: becomes it).
func expectGolden(_ argv: [String], at path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let text = argv.joined(separator: "\n") + "\n"
    if getenv("CLOUDBIOS_UPDATE_GOLDEN") != nil {
        try writeFile(path, text)
    }
    let expected = try readFile(path)
    #expect(text == expected, "argv differs from \(path); rerun with CLOUDBIOS_UPDATE_GOLDEN=1 to review", sourceLocation: sourceLocation)
}

func readFile(_ path: String) throws -> String {
    guard let f = fopen(path, "r") else { throw GoldenError.missing(path) }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func writeFile(_ path: String, _ text: String) throws {
    guard let f = fopen(path, "w") else { throw GoldenError.missing(path) }
    defer { fclose(f) }
    _ = Array(text.utf8).withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
}

enum GoldenError: Error { case missing(String) }
