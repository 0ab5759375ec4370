import Testing
@testable import Config

/// The VM rules (`VMSpec.problems()`, `VMLimits`) on specs built in code, and
/// as the decoder reports them for a file or a request body.
@Suite struct VMRulesTests {
    static func spec(_ edit: (inout VMSpec) -> Void) -> VMSpec {
        var s = VMSpec(name: "a")
        edit(&s)
        return s
    }

    @Test func aSpecUsingEveryFeatureHasNoProblem() {
        let s = Self.spec {
            $0.memory = VMLimits.memoryMiB.upperBound; $0.cpus = VMLimits.cpus.upperBound
            $0.kernel = "k"; $0.initrd = "i"; $0.append = String(repeating: "x", count: VMLimits.maxAppendBytes)
            $0.cdrom = "d.iso"; $0.boot = [.cdrom, .disk]; $0.order = VMLimits.order.lowerBound
            $0.disks = (0..<VMLimits.maxDisks).map { .blank(size: VMLimits.diskBytes.upperBound, id: "d\($0)") }
            $0.forwards = [PortForward(host: VMLimits.ports.upperBound, guest: VMLimits.ports.lowerBound),
                           PortForward(host: VMLimits.ports.upperBound, guest: 22, proto: .udp)]
            var c = CloudInitSpec()
            c.hostname = "web"; c.user = "debian"; c.passwordHash = "$6$salt$hash"
            c.sshAuthorizedKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"]
            c.network = .staticIPv4(address: "10.0.0.5/24", gateway: "10.0.0.1", dns: ["10.0.0.1"])
            c.userData = String(repeating: "#", count: VMLimits.maxUserDataBytes)
            $0.cloudInit = c
        }
        #expect(s.problems() == [])
    }

    // (field, message) of the one problem each spec has
    static let broken: [(VMSpec, String, String)] = [
        (spec { $0.name = "Bad_Name" }, "name", "VM name 'Bad_Name' must start with a lowercase letter or digit"),
        (spec { $0.memory = VMLimits.memoryMiB.lowerBound - 1 }, "memory", "memory must be at least 16 MiB"),
        (spec { $0.memory = VMLimits.memoryMiB.upperBound + 1 }, "memory", "memory 1.0 TiB is larger than the maximum 1.0 TiB"),
        (spec { $0.memory = .max }, "memory", "memory \(Int.max) MiB is larger than the maximum 1.0 TiB"),
        (spec { $0.cpus = 0 }, "cpus", "cpus must be between 1 and 256, not 0"),
        (spec { $0.cpus = 257 }, "cpus", "cpus must be between 1 and 256, not 257"),
        (spec { $0.kernel = "../k" }, "kernel", "kernel: image name '../k' must start with a letter or digit"),
        (spec { $0.kernel = "k"; $0.initrd = "i,x" }, "initrd", "initrd: image name 'i,x' may contain only letters, digits, '.', '_' and '-'"),
        (spec { $0.kernel = "k"; $0.append = "a\nb" }, "append", "append must not contain control characters"),
        (spec { $0.kernel = "k"; $0.append = String(repeating: "x", count: 4097) }, "append", "append is longer than 4096 bytes"),
        (spec { $0.cdrom = "-drive" }, "cdrom", "cdrom: image name '-drive' must start with a letter or digit"),
        (spec { $0.disks = Array(repeating: .blank(size: 1 << 30), count: 17) }, "disks", "disks: at most 16 disks"),
        (spec { $0.disks = [.blank(size: 1 << 30, id: "Root")] }, "disks[0].id",
         "disks[0].id 'Root' must be 1 to 32 lower-case letters, digits and '-', starting with a letter or digit"),
        (spec { $0.disks = [.blank(size: 1 << 30, id: "a"), .image("x", id: "a")] }, "disks[1].id", "disks[1].id 'a' is used twice"),
        (spec { $0.disks = [.blank(size: (1 << 20) - 1)] }, "disks[0].size", "disks[0].size must be at least 1M"),
        (spec { $0.disks = [.blank(size: (64 << 40) + 1)] }, "disks[0].size", "disks[0].size 64.0 TiB is larger than the maximum 64.0 TiB"),
        (spec { $0.disks = [.image("a/b")] }, "disks[0].image", "disks[0].image: image name 'a/b' may contain only letters, digits, '.', '_' and '-'"),
        (spec { $0.disks = [DiskSpec(id: "x")] }, "disks[0]", "disks[0] needs a size (a blank disk) or an image (a copy of a store image)"),
        (spec { $0.forwards = [PortForward(host: 0, guest: 22)] }, "forwards[0].host", "forwards[0].host must be between 1 and 65535, not 0"),
        (spec { $0.forwards = [PortForward(host: 22, guest: 65536)] }, "forwards[0].guest", "forwards[0].guest must be between 1 and 65535, not 65536"),
        (spec { $0.forwards = [PortForward(host: 2222, guest: 22), PortForward(host: 2222, guest: 23)] }, "forwards[1]",
         "forwards[1]: host port tcp 2222 is forwarded twice"),
        (spec { $0.network = .bridge; $0.forwards = [PortForward(host: 2222, guest: 22)] }, "forwards",
         "forwards need network: nat (a bridged VM is reached at its own address)"),
        (spec { $0.boot = [.disk, .disk] }, "boot[1]", "boot names disk twice"),
        (spec { $0.order = 100_001 }, "order", "order must be between -100000 and 100000, not 100001"),
        (spec { $0.initrd = "i" }, "", "initrd needs kernel"),
        (spec { $0.append = "quiet" }, "", "append needs kernel"),
        (spec { var c = CloudInitSpec(); c.hostname = "-x"; $0.cloudInit = c }, "cloud_init.hostname", "cloud_init.hostname '-x' is not a valid host name"),
        (spec { var c = CloudInitSpec(); c.user = "root"; $0.cloudInit = c }, "cloud_init.user",
         "cloud_init.user 'root' must be a Linux user name other than root (lower-case letters, digits, '_', '-')"),
        (spec { var c = CloudInitSpec(); c.passwordHash = "hunter2"; $0.cloudInit = c }, "cloud_init.password_hash",
         "cloud_init.password_hash must be a crypt(3) hash ($6$… or $y$…; 'cloudbios passwd' makes one)"),
        (spec { var c = CloudInitSpec(); c.sshAuthorizedKeys = ["nope"]; $0.cloudInit = c }, "cloud_init.ssh_authorized_keys[0]",
         "not an SSH public key (expected 'ssh-ed25519 AAAA… comment', as in ~/.ssh/id_ed25519.pub)"),
        (spec { var c = CloudInitSpec(); c.network = .staticIPv4(address: "10.0.0.5", gateway: nil, dns: []); $0.cloudInit = c },
         "cloud_init.network", "cloud_init.network.address must be an IPv4 CIDR like 10.213.0.10/24"),
        (spec { var c = CloudInitSpec(); c.network = .staticIPv4(address: "10.0.0.5/24", gateway: "10.0.0", dns: []); $0.cloudInit = c },
         "cloud_init.network", "cloud_init.network.gateway must be an IPv4 address"),
        (spec { var c = CloudInitSpec(); c.network = .staticIPv4(address: "10.0.0.5/24", gateway: nil, dns: ["1.1.1.1", "dns"]); $0.cloudInit = c },
         "cloud_init.network.dns[1]", "cloud_init.network.dns entries must be IPv4 addresses"),
        (spec { var c = CloudInitSpec(); c.userData = String(repeating: "#", count: (64 << 10) + 1); $0.cloudInit = c },
         "cloud_init.user_data", "cloud_init.user_data is larger than 64 KiB"),
    ]

    @Test(arguments: broken.indices)
    func eachRuleNamesItsField(_ i: Int) {
        let (spec, field, message) = Self.broken[i]
        let p = spec.problems()
        #expect(p.map(\.field) == [field], "\(p)")
        #expect(p.map(\.message) == [message], "\(p)")
    }

    @Test func aRepeatSaysWhereTheFirstIs() {
        let s = Self.spec { $0.disks = [.blank(size: 1 << 30, id: "a"), .blank(size: 1 << 30, id: "b"), .blank(size: 1 << 30, id: "a")] }
        #expect(s.problems().first?.firstAt == "disks[0].id")
    }

    /// The decoder reports the rules' problems where the value is, with the
    /// VM's path in front (but not before a message that names itself).
    @Test func theFileGetsEachProblemAtItsValue() {
        let e = errors("""
        version: 1
        vms:
          - name: a
            memory: 8
            disks:
              - {size: 1G, id: a}
              - {size: 1G, id: a}
            cloud_init:
              network: {address: 10.0.0.5/24, dns: [1.1.1.1, nine]}
            forwards: [{host: 2222, guest: 0}]
            boot: [disk, disk]
            initrd: i
        """)
        #expect(e == [
            "c.yaml:3:5: vms[0].initrd needs kernel",
            "c.yaml:4:13: vms[0].memory must be at least 16 MiB",
            "c.yaml:7:24: vms[0].disks[1].id 'a' is used twice (first at line 6)",
            "c.yaml:9:54: vms[0].cloud_init.network.dns entries must be IPv4 addresses",
            "c.yaml:10:36: vms[0].forwards[0].guest must be between 1 and 65535, not 0",
            "c.yaml:11:18: vms[0].boot names disk twice",
        ])
    }

    /// A list entry whose own value did not decode gets that error only: the
    /// rules that would follow from the missing value are moot.
    @Test func anEntryThatDidNotDecodeGetsOneError() {
        #expect(errors("version: 1\nvms:\n  - name: a\n    disks: [{size: lots}]\n")
                == ["c.yaml:4:20: vms[0].disks[0].size must be a size like 512M, 8G or 8GiB"])
        #expect(errors("version: 1\nvms:\n  - name: a\n    forwards: [{host: 22, guest: 1}, {host: 22, guest: 2, proto: sctp}]\n")
                == ["c.yaml:4:66: vms[0].forwards[1].proto must be one of tcp, udp, not 'sctp'"])
    }

    /// The API's body: the same rules, the field named without a path.
    @Test func aBodyGetsTheSameRules() {
        #expect {
            try VMSpec.decode(json: Array(#"{"name": "a", "cpus": 300, "forwards": [{"host": 1, "guest": 1}], "network": "none"}"#.utf8))
        } throws: { e in
            (e as? ConfigErrors)?.errors.map(\.description) == [
                "body:1:23: cpus must be between 1 and 256, not 300",
                "body:1:40: forwards need network: nat (a bridged VM is reached at its own address)",
            ]
        }
    }
}
