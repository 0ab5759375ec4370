import Testing
import Config
@testable import QEMU
#if canImport(Glibc)
import Glibc
#endif

/// From `cloudbios.yaml` to the QEMU command line: each file in
/// `Golden/config/` goes through the real config decoder, and its one VM's
/// argv is compared with the `.args` beside it, one argument per line.
/// Every command line also carries the QMP socket, the serial socket with
/// its log, and the VNC display. `CLOUDBIOS_UPDATE_GOLDEN=1 swift test
/// --filter ConfigArgvGolden` rewrites the `.args` files for review.
@Suite struct ConfigArgvGoldenTests {
    static let dir = ArgvGoldenTests.goldenDir + "/config"

    /// A host without KVM or the NAT bridge: TCG, QEMU user networking.
    static let tcgHost = ArgvGoldenTests.tcgHost
    /// A host with KVM, OVMF, the NAT bridge and vmbr0.
    static let kvmHost = ArgvGoldenTests.kvmHost

    /// Each file and the host it is built for, one per VM feature.
    static let cases: [(String, HostFacts)] = [
        ("kernel-boot-display", tcgHost),
        ("memory-cpus-kvm", kvmHost),
        ("accel-tcg-on-kvm-host", kvmHost),
        ("disks-ids-images", kvmHost),
        ("cdrom-boot-disk-first", kvmHost),
        ("cdrom-only-boot", tcgHost),
        ("uefi-nvram", kvmHost),
        ("cloud-init-seed", tcgHost),
        ("nat-bridge-tap", kvmHost),
        ("user-net-forwards", tcgHost),
        ("bridged-nic", kvmHost),
        ("no-network", tcgHost),
        ("agent-off", tcgHost),
    ]

    static func argv(_ name: String, _ host: HostFacts) throws -> [String] {
        let path = "\(dir)/\(name).yaml"
        let cfg = try ConfigLoader.load(path: path, text: try readFile(path))
        let vm = try #require(cfg.vms.count == 1 ? cfg.vms.first : nil, "\(path) must define one VM")
        return try QEMUCommand.argv(spec: vm, host: host, paths: VMPaths(stateDir: "/var/lib/cloudbios", name: vm.name),
                                    images: ImageResolver(directory: "/var/lib/cloudbios/images"))
    }

    @Test(arguments: cases.map { $0.0 })
    func golden(_ name: String) throws {
        let host = Self.cases.first { $0.0 == name }!.1
        try expectGolden(try Self.argv(name, host), at: "\(Self.dir)/\(name).args")
    }

    /// No file without its case, no case without its file.
    @Test func everyConfigFileHasItsCase() throws {
        guard let d = opendir(Self.dir) else { throw GoldenError.missing(Self.dir) }
        defer { closedir(d) }
        var files: Set<String> = []
        while let e = readdir(d) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n != "." && n != ".." { files.insert(n) }
        }
        let names = Self.cases.map(\.0)
        #expect(files == Set(names.map { "\($0).yaml" } + names.map { "\($0).args" }))
    }

    /// What each feature puts on the command line, independent of the
    /// golden files (so a rewrite that drops a feature fails here).
    @Test func eachFeatureReachesTheCommandLine() throws {
        func has(_ name: String, _ host: HostFacts, _ parts: [String]) throws {
            let argv = try Self.argv(name, host)
            for p in parts { #expect(argv.contains { $0.contains(p) }, "\(name): no '\(p)' in \(argv)") }
        }
        func lacks(_ name: String, _ host: HostFacts, _ parts: [String]) throws {
            let argv = try Self.argv(name, host)
            for p in parts { #expect(!argv.contains { $0.contains(p) }, "\(name): '\(p)' in \(argv)") }
        }
        try has("kernel-boot-display", Self.tcgHost, ["/var/lib/cloudbios/images/tiny-kernel", "/var/lib/cloudbios/images/tiny-initrd",
                                                      "console=tty1 console=ttyS0,115200 quiet", "unix:/var/lib/cloudbios/run/tiny/vnc.sock",
                                                      "path=/var/lib/cloudbios/run/tiny/serial.sock"])
        let big = try Self.argv("memory-cpus-kvm", Self.kvmHost)
        #expect(Self.option(big, "-m") == "8192" && Self.option(big, "-smp") == "8")
        #expect(Self.option(big, "-accel") == "kvm" && Self.option(big, "-cpu") == "host" && Self.option(big, "-machine") == "q35")
        let emulated = try Self.argv("accel-tcg-on-kvm-host", Self.kvmHost)
        #expect(Self.option(emulated, "-accel") == "tcg" && Self.option(emulated, "-cpu") == QEMUCommand.tcgCPU)
        try has("disks-ids-images", Self.kvmHost, ["id=disk-root,", "/disks/db/root.qcow2", "/disks/db/disk1.qcow2", "/disks/db/scratch.qcow2",
                                                   "drive=disk-root,id=virtio-disk-root,bootindex=1", "drive=disk-scratch,id=virtio-disk-scratch,bootindex=3"])
        try has("cdrom-boot-disk-first", Self.kvmHost, ["drive=disk-system,id=virtio-disk-system,bootindex=1", "drive=cd0,id=cdrom0,bootindex=2",
                                                        "file=/var/lib/cloudbios/images/debian-12.5.0-amd64-netinst.iso"])
        try has("cdrom-only-boot", Self.tcgHost, ["drive=cd0,id=cdrom0,bootindex=1", "id=virtio-disk-disk0"])
        try lacks("cdrom-only-boot", Self.tcgHost, ["virtio-disk-disk0,bootindex"])
        try has("uefi-nvram", Self.kvmHost, ["if=pflash,unit=0,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                                             "if=pflash,unit=1,format=raw,file=/var/lib/cloudbios/disks/efi/efivars.fd"])
        try has("cloud-init-seed", Self.tcgHost, ["file=/var/lib/cloudbios/disks/web1/cidata.img", "drive=cidata,id=virtio-cidata"])
        try has("nat-bridge-tap", Self.kvmHost, ["tap,id=net0,ifname=\(QEMUCommand.tapName(for: "web2"))", "mac=\(QEMUCommand.mac(for: "web2"))"])
        try lacks("nat-bridge-tap", Self.kvmHost, ["hostfwd"])
        try has("user-net-forwards", Self.tcgHost, ["user,id=net0,hostfwd=tcp::2222-:22,hostfwd=udp::5353-:53"])
        try has("bridged-nic", Self.kvmHost, ["tap,id=net0,ifname=\(QEMUCommand.tapName(for: "lan"))"])
        try lacks("no-network", Self.tcgHost, ["-netdev", "virtio-net-pci"])
        try has("agent-off", Self.tcgHost, ["path=/var/lib/cloudbios/run/quiet/serial.sock"])
        try lacks("agent-off", Self.tcgHost, ["qga.sock", "org.qemu.guest_agent.0"])
        try has("no-network", Self.tcgHost, ["org.qemu.guest_agent.0"])
    }

    static func option(_ argv: [String], _ flag: String) -> String? {
        argv.firstIndex(of: flag).flatMap { $0 + 1 < argv.count ? argv[$0 + 1] : nil }
    }
}
