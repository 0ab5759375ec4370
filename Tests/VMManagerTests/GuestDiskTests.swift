#if canImport(Glibc)
import Glibc
#endif
import Testing
import Config
import Platform
@testable import QEMU
@testable import VMManager

/// Disks by id, any base format, growth, cloud-init seeds, forwards and the
/// agent's answers: with the real qemu-img, mkfs.fat and mtools, no VM boot.
@Suite(.serialized) struct GuestDiskTests {
    func manager(_ dir: String) throws -> VMManager {
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.kvmProbeTimeout = 1
        o.reservedPorts = ["tcp/8443": "the panel"]
        return try VMManager(options: o)
    }

    static let host = HostFacts(kvmUsable: false, kvmReason: "test")

    func run(_ argv: [String]) throws -> String {
        let r = try Launcher(Launcher.which(argv[0])!, Array(argv.dropFirst())).run()
        #expect(r.status == 0, "\(argv): \(r.output)")
        return r.output
    }

    @Test func removingAMiddleDiskLeavesTheOthersOnTheirFiles() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        var s = VMSpec(name: "d")
        s.network = .none
        s.disks = [.blank(size: 1 << 20, id: "a"), .blank(size: 2 << 20, id: "b"), .blank(size: 3 << 20, id: "c")]
        _ = try await m.create(s)
        let p = VMPaths(stateDir: dir, name: "d")
        try await m.prepareDisks(await m.vm("d").spec, p, host: Self.host)
        // a marker written into c's file stays with c
        _ = try run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", p.disk("c")])
        s.disks.remove(at: 1)
        _ = try await m.update("d", s)
        try await m.prepareDisks(await m.vm("d").spec, p, host: Self.host)
        let read = try run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 64k", p.disk("c")])
        #expect(!read.contains("Pattern verification failed"), "\(read)")
        #expect(try await DiskImage.info(p.disk("c")).virtualSize == 3 << 20)
        #expect(try await DiskImage.info(p.disk("a")).virtualSize == 1 << 20)
    }

    @Test func theFirstFormGetsPositionalIdsOnce() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        var s = VMSpec(name: "old")
        s.network = .none
        s.disks = [.blank(size: 1 << 20), .blank(size: 1 << 20)]
        #expect(try await m.create(s).spec.disks.map(\.id) == ["disk0", "disk1"])
        // stored: a restart reads the ids back
        let again = try manager(dir)
        #expect(try await again.vm("old").spec.disks.map(\.id) == ["disk0", "disk1"])
        // the config's unchanged first form is no change
        #expect(await again.applyConfig([s]).isEmpty)
        var mixed = VMSpec(name: "x")
        mixed.disks = [.blank(size: 1 << 20, id: "disk0"), .blank(size: 1 << 20)]
        mixed.assignDiskIDs()
        #expect(mixed.disks.map(\.id) == ["disk0", "disk1"])
    }

    @Test func baseImagesOfAnyFormatAreGrownAndNeverShrunk() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        try Files.makeDirectories(dir + "/images")
        _ = try run(["qemu-img", "create", "-q", "-f", "vmdk", dir + "/images/base.vmdk", "16M"])
        _ = try run(["qemu-img", "create", "-q", "-f", "raw", dir + "/images/base.raw", "8M"])
        let facts = await m.images().map { "\($0.name) \($0.format ?? "?") \($0.virtualSize ?? -1)" }
        #expect(facts == ["base.raw raw \(8 << 20)", "base.vmdk vmdk \(16 << 20)"])
        var s = VMSpec(name: "g")
        s.network = .none
        s.disks = [.image("base.vmdk", size: 32 << 20, id: "root"), .image("base.raw", id: "second")]
        _ = try await m.create(s)
        let p = VMPaths(stateDir: dir, name: "g")
        try await m.prepareDisks(await m.vm("g").spec, p, host: Self.host)
        let info = try run(["qemu-img", "info", "--output=json", p.disk("root")])
        #expect(info.contains("\"backing-filename-format\": \"vmdk\""), "\(info)")
        #expect(try await DiskImage.info(p.disk("root")).virtualSize == 32 << 20)
        #expect(try await DiskImage.info(p.disk("second")).virtualSize == 8 << 20)
        // grown at the next start; shrinking is refused and changes nothing
        s.disks[0].size = 48 << 20
        _ = try await m.update("g", s)
        try await m.prepareDisks(await m.vm("g").spec, p, host: Self.host)
        #expect(try await DiskImage.info(p.disk("root")).virtualSize == 48 << 20)
        var smaller = s
        smaller.disks[0].size = 40 << 20
        await #expect(throws: VMError.invalid("disk 'root' cannot shrink from 48M to 40M (its data would be lost)")) { try await m.update("g", smaller) }
        #expect(try await m.vm("g").spec.disks[0].size == 48 << 20)
        // smaller than its image: refused when the disk is made
        var tiny = VMSpec(name: "t")
        tiny.network = .none
        tiny.disks = [.image("base.vmdk", size: 4 << 20, id: "root")]
        _ = try await m.create(tiny)
        await #expect(throws: VMError.self) { try await m.prepareDisks(tiny, VMPaths(stateDir: dir, name: "t"), host: Self.host) }
    }

    @Test func forwardsCannotTakeThePanelsOrAnotherVMsPort() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let m = try manager(dir)
        var a = VMSpec(name: "a")
        a.forwards = [PortForward(host: 2222, guest: 22)]
        _ = try await m.create(a)
        var b = VMSpec(name: "b")
        b.forwards = [PortForward(host: 2222, guest: 22)]
        await #expect(throws: VMError.conflict("host port tcp 2222 is forwarded to VM 'a' already")) { try await m.create(b) }
        b.forwards = [PortForward(host: 8443, guest: 443)]
        await #expect(throws: VMError.conflict("host port tcp 8443 is taken by the panel")) { try await m.create(b) }
        b.forwards = [PortForward(host: 2222, guest: 22, proto: .udp)]
        #expect(try await m.create(b).spec.forwards.count == 1)
        #expect(await m.list().map(\.spec.name) == ["a", "b"])
    }

    @Test func cloudInitSeedIsANoCloudVolumeThatFollowsTheSpec() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        var s = VMSpec(name: "web1")
        var c = CloudInitSpec()
        c.sshAuthorizedKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@x"]
        c.network = .staticIPv4(address: "10.213.0.10/24", gateway: "10.213.0.1", dns: ["10.213.0.1"])
        c.userData = "#cloud-config\npackages: [htop]\n"
        s.cloudInit = c
        let seed = CloudInitSeed(vm: s, mac: "52:54:00:aa:bb:cc")
        #expect(seed.metaData.contains("local-hostname: web1"))
        #expect(seed.userData.hasPrefix("Content-Type: multipart/mixed"))
        #expect(seed.userData.contains("name: debian") && seed.userData.contains("NOPASSWD:ALL") && seed.userData.contains("packages: [htop]"))
        #expect(seed.networkConfig.contains("macaddress: \"52:54:00:aa:bb:cc\"") && seed.networkConfig.contains("addresses: [10.213.0.10/24]"))
        // another VM (a clone) or another key is another instance
        var clone = s; clone.name = "web2"
        #expect(CloudInitSeed(vm: clone, mac: "52:54:00:aa:bb:cd").instanceID != seed.instanceID)
        #expect(CloudInitSeed(vm: s, mac: "52:54:00:aa:bb:cc").instanceID == seed.instanceID)
        let path = dir + "/cidata.img"
        try Files.makeDirectories(dir)
        try await seed.build(at: path)
        let label = try run(["blkid", "-p", "-o", "value", "-s", "LABEL", path])
        #expect(label.split(separator: "\n").first == "CIDATA")
        let listing = try run(["mdir", "-b", "-i", path, "::/"])
        for f in ["META-DATA", "USER-DATA", "NETWORK-CONFIG"] { #expect(listing.uppercased().contains(f), "\(listing)") }
        let meta = try run(["mtype", "-i", path, "::/meta-data"])
        #expect(meta.contains(seed.instanceID))
    }

    @Test func natForwardsBecomeDNATRulesFromOutsideAndFromTheHost() {
        let r = NATNetwork.nftRuleset(forwards: [.init(proto: "tcp", hostPort: 2222, address: "10.213.0.2", guestPort: 22)])
        #expect(r.split(separator: "\n").filter { $0.contains("fib daddr type local tcp dport 2222 dnat to 10.213.0.2:22") }.count == 2)  // prerouting + output
        #expect(r.contains("type nat hook output priority -100"))
        #expect(r.contains("ip saddr 127.0.0.0/8 ct status dnat masquerade"))
        #expect(!NATNetwork.nftRuleset().contains("dnat"))
    }

    @Test func agentAndImageFactsAreParsed() throws {
        let ifaces = try JSONValue.parse(Array("""
        [{"name":"lo","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1","prefix":8}]},
         {"name":"ens3","hardware-address":"52:54:00:12:34:56","ip-addresses":[
           {"ip-address-type":"ipv4","ip-address":"10.0.2.15","prefix":24},
           {"ip-address-type":"ipv6","ip-address":"fe80::5054:ff:fe12:3456","prefix":64},
           {"ip-address-type":"ipv6","ip-address":"fec0::5054:ff:fe12:3456","prefix":64}]}]
        """.utf8))
        guard case .array(let list) = ifaces else { Issue.record("not a list"); return }
        #expect(GuestAgent.parseAddresses(list) == [
            GuestAddress(interface: "ens3", address: "10.0.2.15", prefix: 24, family: "ipv4", source: "agent"),
            GuestAddress(interface: "ens3", address: "fec0::5054:ff:fe12:3456", prefix: 64, family: "ipv6", source: "agent")])
        #expect(try DiskImage.parse(#"{"virtual-size": 2147483648, "filename": "x", "format": "vmdk"}"#) == .init(format: "vmdk", virtualSize: 2 << 30))
        #expect(throws: (any Error).self) { try DiskImage.parse("not json") }
    }

    /// A size no Int64 holds is refused as no size, not trapped on.
    @Test func anImpossibleImageSizeIsRefused() {
        for size in ["1e300", "1e999", "9223372036854775808"] {
            #expect(throws: (any Error).self, "\(size)") { try DiskImage.parse(#"{"virtual-size": \#(size), "format": "raw"}"#) }
        }
    }
}

/// An OVA in the store becomes a VM; a hostile one is refused before
/// anything is extracted.
@Suite(.serialized) struct OVAImportTests {
    static func ovf(_ disk: String) -> String { ovfTemplate.split(separator: "%DISK%", omittingEmptySubsequences: false).joined(separator: disk) }

    static let ovfTemplate = """
    <?xml version="1.0" encoding="UTF-8"?>
    <Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
      xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
      <References><File ovf:id="file1" ovf:href="%DISK%"/></References>
      <DiskSection><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="16777216"/></DiskSection>
      <VirtualSystem ovf:id="appliance"><Name>appliance</Name>
        <VirtualHardwareSection>
          <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ResourceType>3</rasd:ResourceType>
            <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
          <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType>
            <rasd:VirtualQuantity>768</rasd:VirtualQuantity></Item>
        </VirtualHardwareSection>
      </VirtualSystem>
    </Envelope>
    """

    func run(_ argv: [String], in dir: String) throws {
        let r = try Launcher(Launcher.which(argv[0])!, Array(argv.dropFirst())).run()
        #expect(r.status == 0, "\(argv): \(r.output)")
    }

    func makeOVA(_ dir: String, disk: String, member: String? = nil) throws -> String {
        let src = dir + "/ova-src"
        try Files.makeDirectories(src)
        try Files.writeAtomically(src + "/appliance.ovf", Self.ovf(disk))
        try run(["qemu-img", "create", "-q", "-f", "vmdk", src + "/disk1.vmdk", "16M"], in: dir)
        try Files.makeDirectories(dir + "/images")
        let out = dir + "/images/appliance.ova"
        try run(["tar", "-cf", out, "-C", src, "appliance.ovf", member ?? "disk1.vmdk"], in: dir)
        return out
    }

    @Test func anOVABecomesAVMWithConvertedDisks() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        _ = try makeOVA(dir, disk: "disk1.vmdk")
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        let m = try VMManager(options: o)
        let t = try await m.startVMImport(image: "appliance.ova", name: "appliance")
        var done = t
        for _ in 0..<100 {
            done = m.tasks.task(t.id)!
            if done.state == .succeeded || done.state == .failed { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(done.state == .succeeded, "\(done.message)")
        let vm = try await m.vm("appliance").spec
        #expect(vm.memory == 768 && vm.cpus == 2 && vm.disks == [.image("appliance-disk0", id: "disk0")])
        let facts = await m.images().first { $0.name == "appliance-disk0" }
        #expect(facts?.format == "qcow2" && facts?.virtualSize == 16 << 20)
    }

    @Test func aDiskOutsideTheOVAIsRefusedAndNothingMade() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        _ = try makeOVA(dir, disk: "../../etc/passwd")
        let m = try VMManager(options: VMManagerOptions(stateDir: dir))
        await #expect(throws: VMError.invalid("the OVF's disk '../../etc/passwd' is not a file of the OVA; refused")) {
            try await m.startVMImport(image: "appliance.ova", name: "evil")
        }
        #expect(await m.list().isEmpty)
        // a disk that is a symbolic link to a file of the host is not read
        let src = dir + "/ova-link"
        try Files.makeDirectories(src)
        try Files.writeAtomically(src + "/appliance.ovf", Self.ovf("disk1.vmdk"))
        symlink("/etc/hostname", src + "/disk1.vmdk")
        try run(["tar", "-cf", dir + "/images/link.ova", "-C", src, "appliance.ovf", "disk1.vmdk"], in: dir)
        let t = try await m.startVMImport(image: "link.ova", name: "linked")
        var done = t
        for _ in 0..<100 {
            done = m.tasks.task(t.id)!
            if done.state == .succeeded || done.state == .failed { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(done.state == .failed && done.message.contains("not a plain file"), "\(done.message)")
        #expect(await m.list().isEmpty)
        #expect(!(await m.images().contains { $0.name == "linked-disk0" }))
        // not an archive at all
        try Files.writeAtomically(dir + "/images/plain.ova", "not a tar")
        await #expect(throws: VMError.self) { try await m.startVMImport(image: "plain.ova", name: "x") }
    }

    @Test func ovfFactsAreRead() throws {
        let d = try OVFDescriptor.parse(Self.ovf("a.vmdk"))
        #expect(d == OVFDescriptor(name: "appliance", memoryMiB: 768, cpus: 2, uefi: false, diskFiles: ["a.vmdk"]))
        #expect(!OVFDescriptor.safeMember("../x") && !OVFDescriptor.safeMember("/etc/passwd") && OVFDescriptor.safeMember("dir/disk.vmdk"))
    }
}
