import Testing
@testable import Init
import Config
import Platform
import Disks
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

@Suite struct BootSequenceTests {
    @Test func phasesAreInBootOrder() {
        #expect(BootSequence.names == ["mounts", "console", "cmdline", "modules", "hotplug", "network",
                                       "volumes", "config", "interfaces", "payload", "hostname", "storage", "install", "services", "status"])
        // mounts come before anything that reads /proc or /sys
        let hw = BootSequence.phases.filter(\.hardware).map(\.name)
        #expect(hw == ["mounts", "console", "modules", "hotplug", "network", "interfaces", "storage", "install"])
        // a headless install happens after the config is known and before any VM starts
        let n = BootSequence.names
        #expect(n.firstIndex(of: "config")! < n.firstIndex(of: "install")!)
        #expect(n.firstIndex(of: "install")! < n.firstIndex(of: "services")!)
    }
}

@Suite struct KernelCommandLineTests {
    @Test func splitsAndFindsValues() {
        let c = KernelCommandLine("BOOT_IMAGE=/boot/vmlinuz console=tty0 console=ttyS0,115200 cloudbios.display=win11 quiet cloudbios.config=\"LABEL=MY CFG\"\n")
        #expect(c.value("console") == "ttyS0,115200")
        #expect(c.display == "win11")
        #expect(c.configSource == "LABEL=MY CFG")
        #expect(c.flag("quiet"))
        #expect(!c.rescue)
        #expect(KernelCommandLine("cloudbios.rescue=1").rescue)
    }
}

@Suite struct ConfigDiscoveryTests {
    let volumes = Volume.parseBlkid("""
        /dev/sr0: LABEL="CLOUDBIOS" TYPE="iso9660"
        /dev/vdb: LABEL="CBCONFIG" UUID="1234-ABCD" TYPE="vfat"
        /dev/sda3: LABEL="CB-CONFIG" UUID="aa" TYPE="ext4"
        /dev/sda4: LABEL="CB-DATA" TYPE="ext4"
        /dev/vdc: UUID="x" TYPE="swap"
        """)

    @Test func parsesBlkid() {
        #expect(volumes.count == 5)
        #expect(volumes[1] == Volume(device: "/dev/vdb", label: "CBCONFIG", type: "vfat", uuid: "1234-ABCD"))
        #expect(volumes[4].label == nil)
    }

    @Test func defaultOrderIsCBCONFIGThenBootMediumThenInstalled() {
        let plan = ConfigDiscovery.plan(KernelCommandLine("console=ttyS0"), volumes: volumes)
        let devices = plan.compactMap { step -> String? in
            if case .volume(let v, let f, _) = step { #expect(f == "cloudbios.yaml"); return v.device }
            return nil
        }
        #expect(devices == ["/dev/vdb", "/dev/sr0", "/dev/sda3"])
    }

    @Test func kernelArgumentWinsAlone() {
        #expect(ConfigDiscovery.plan(KernelCommandLine("cloudbios.config=https://h/c.yaml"), volumes: volumes)
                == [.fetch(url: "https://h/c.yaml")])
        #expect(ConfigDiscovery.plan(KernelCommandLine("cloudbios.config=/etc/x.yaml"), volumes: volumes)
                == [.file(path: "/etc/x.yaml")])
        #expect(ConfigDiscovery.plan(KernelCommandLine("cloudbios.config=LABEL=CB-CONFIG"), volumes: volumes)
                == [.volume(volumes[2], file: "cloudbios.yaml", source: .label("CB-CONFIG"))])
    }

    @Test func missingExplicitLabelIsAnError() {
        #expect(ConfigDiscovery.plan(KernelCommandLine("cloudbios.config=LABEL=NOPE"), volumes: volumes)
                == [.missing(.label("NOPE"))])
        #expect(ConfigDiscovery.plan(KernelCommandLine(""), volumes: []).isEmpty)
    }
}

@Suite struct SupervisorTests {
    final class FakeClock: @unchecked Sendable { var now = 100.0 }

    @Test func backoffDoublesAndResets() {
        var b = Backoff(RestartPolicy(initialDelay: 1, maxDelay: 30, factor: 2, resetAfter: 60))
        #expect([b.exited(ranFor: 1), b.exited(ranFor: 1), b.exited(ranFor: 1), b.exited(ranFor: 1),
                 b.exited(ranFor: 1), b.exited(ranFor: 1), b.exited(ranFor: 1)] == [1, 2, 4, 8, 16, 30, 30])
        #expect(b.exited(ranFor: 120) == 1)
    }

    @Test func restartsWithBackoffOnAFakeClock() {
        let clock = FakeClock()
        var nextPid: Int32 = 10
        var lines: [String] = []
        let sup = Supervisor(clock: { clock.now }, spawner: { _ in nextPid += 1; return nextPid }, log: { lines.append($0) })
        sup.add(Service(name: "daemon", path: "/usr/bin/cloudbios", arguments: ["daemon"]))
        sup.tick()
        #expect(sup.service("daemon")?.pid == 11)
        clock.now += 0.5
        #expect(sup.exited(pid: 11, status: 1))
        #expect(!sup.exited(pid: 999, status: 0))  // an orphan, not ours
        #expect(sup.nextDeadline() == 1)
        clock.now += 0.9
        sup.tick()
        #expect(sup.service("daemon")?.pid == nil)  // not yet due
        clock.now += 0.2
        sup.tick()
        #expect(sup.service("daemon")?.pid == 12)
        clock.now += 1
        sup.exited(pid: 12, status: 139)
        #expect(sup.nextDeadline() == 2)
        #expect(lines.contains("daemon killed by signal 11 after 1 s; restarting in 2 s"))
        // a stopped service is not restarted
        clock.now += 5
        sup.tick()
        #expect(sup.disable("daemon") == 13)
        sup.exited(pid: 13, status: 0)
        clock.now += 100
        sup.tick()
        #expect(sup.service("daemon")?.pid == nil)
    }

    @Test func failedSpawnIsRetried() {
        let clock = FakeClock()
        struct Boom: Error {}
        var fail = true
        let sup = Supervisor(clock: { clock.now }, spawner: { _ in if fail { throw Boom() }; return 7 })
        sup.add(Service(name: "viewer", path: "/x", arguments: []))
        sup.tick()
        #expect(sup.service("viewer")?.pid == nil)
        fail = false
        clock.now += 1
        sup.tick()
        #expect(sup.service("viewer")?.pid == 7)
    }
}

/// PID 1's services: a real child's exit goes from the `Reaper` to the
/// main loop's queue (waking its poll) and on to the supervisor.
@Suite struct ChildExitsTests {
    @Test func aServiceExitWakesTheLoopAndReachesTheSupervisor() throws {
        let exits = ChildExits()
        let clock = SupervisorTests.FakeClock()
        let sup = Supervisor(clock: { clock.now }, spawner: { s in
            let pid = try Launcher(s.path, s.arguments).spawn()
            Reaper.shared.onExit(pid) { exits.post(pid, $0) }
            return pid
        })
        sup.add(Service(name: "dhcp-eth0", path: "/bin/sh", arguments: ["-c", "sleep 0.2; exit 3"]))
        sup.tick()
        let pid = try #require(sup.service("dhcp-eth0")?.pid)
        var p = pollfd(fd: exits.readFD, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 10_000) == 1)
        let got = exits.take()
        #expect(got.map(\.pid) == [pid])
        #expect(got.map(\.status) == [3])
        // drained: the pipe is quiet again
        #expect(poll(&p, 1, 0) == 0)
        for e in got { #expect(sup.exited(pid: e.pid, status: e.status)) }
        #expect(sup.service("dhcp-eth0")?.pid == nil)
        #expect(sup.service("dhcp-eth0")?.lastStatus == 3)
        #expect(sup.nextDeadline() == 1)
    }
}

@Suite struct ShutdownTests {
    final class Recorder: ShutdownMachine {
        var events: [String] = []
        var t = 0.0
        var vms: [VMRun]
        var alive: Set<String>
        var ignoresPowerdown: Set<String>
        init(vms: [VMRun], ignoresPowerdown: Set<String> = []) {
            self.vms = vms; alive = Set(vms.map(\.name)); self.ignoresPowerdown = ignoresPowerdown
        }
        func log(_ line: String) {}
        func now() -> Double { t }
        func sleep(_ s: Double) { t += s }
        func stopService(_ name: String, timeout: Double) { events.append("stop \(name)") }
        func runningVMs() -> [VMRun] { vms }
        func qmp(_ vm: VMRun, _ command: String) -> Bool {
            events.append("qmp \(vm.name) \(command)")
            if command == "system_powerdown" && !ignoresPowerdown.contains(vm.name) { alive.remove(vm.name) }
            if command == "quit" { alive.remove(vm.name) }
            return true
        }
        func alive(_ vm: VMRun) -> Bool { alive.contains(vm.name) }
        func kill(_ vm: VMRun) { events.append("kill \(vm.name)") }
        func syncDisks() { events.append("sync") }
        func unmountAll() { events.append("unmount") }
        func reboot(_ kind: ShutdownKind) { events.append("reboot \(kind.rawValue)") }
    }

    @Test func signalsMapLikeBusyboxInit() {
        #expect(ShutdownKind(signal: SIGTERM) == .reboot)
        #expect(ShutdownKind(signal: SIGINT) == .reboot)
        #expect(ShutdownKind(signal: SIGUSR1) == .halt)
        #expect(ShutdownKind(signal: SIGUSR2) == .poweroff)
        #expect(ShutdownKind(signal: SIGCHLD) == nil)
    }

    @Test func vmsStopBeforeTheDaemonAndDisksSyncBeforeReboot() {
        let m = Recorder(vms: [VMRun(name: "a", qmpSocket: "/r/a/qmp.sock", pid: 5),
                               VMRun(name: "b", qmpSocket: "/r/b/qmp.sock", pid: 6)], ignoresPowerdown: ["b"])
        ShutdownSequence.run(.poweroff, on: m, vmTimeout: 10, otherServices: ["dhcp-eth0"])
        #expect(m.events == ["stop viewer", "qmp a system_powerdown", "qmp b system_powerdown", "qmp b quit",
                             "stop daemon", "stop dhcp-eth0", "sync", "unmount", "reboot poweroff"])
        #expect(m.t >= 10)  // b was given its full timeout before quit
    }

    @Test func noVMsMeansNoWait() {
        let m = Recorder(vms: [])
        ShutdownSequence.run(.reboot, on: m)
        #expect(m.events == ["stop viewer", "stop daemon", "sync", "unmount", "reboot reboot"])
        #expect(m.t == 0)
    }
}

@Suite struct StatusAndHardwareTests {
    @Test func statusShowsURLFingerprintAndConfigError() {
        let text = StatusScreen.render(StatusInfo(version: "0.1.0", hostname: "box1",
                                                  addresses: [(interface: "eth0", address: "10.0.2.15")],
                                                  tlsFingerprint: "AB:CD", configError: "c.yaml:3:5: unknown key 'memroy'"))
        #expect(text.contains("https://10.0.2.15:8443/"))
        #expect(text.contains("AB:CD"))
        #expect(text.contains("c.yaml:3:5: unknown key 'memroy'"))
        #expect(!text.contains("PAYLOAD ERROR"))
    }

    @Test func statusSaysWhyThePanelIsMissingWithoutThePayload() {
        let text = StatusScreen.render(StatusInfo(version: "0.1.0", hostname: "box1",
                                                  addresses: [(interface: "eth0", address: "10.0.2.15")],
                                                  payloadError: "no cloudbios.sqfs of this build (id 1234)"))
        #expect(text.contains("PAYLOAD ERROR: no cloudbios.sqfs of this build (id 1234)"))
        #expect(text.contains("web panel, virtual machines and installs are unavailable"))
        // no URL that would not answer
        #expect(!text.contains("https://10.0.2.15:8443/"))
    }

    @Test func parsesUevents() {
        let raw = Array("add@/devices/pci0000:00/0000:00:05.0/usb1/1-1\0ACTION=add\0SUBSYSTEM=usb\0MODALIAS=usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00\0".utf8)
        let e = Uevent(raw)
        #expect(e?.action == "add")
        #expect(e?.subsystem == "usb")
        #expect(e?["MODALIAS"]?.hasPrefix("usb:v0781") == true)
        #expect(Uevent(Array("libudev\0junk".utf8)) == nil)
    }

    @Test func keyBitmapFindsThePowerKey() {
        // KEY_POWER = 116: word 1, bit 52 -> "10000000000000 0"
        #expect(Modalias.hasKeyBit("10000000000000 0", bit: 116))
        #expect(!Modalias.hasKeyBit("0", bit: 116))
    }
}

@Suite struct OffTargetBootTests {
    func makeRoot(cmdline: String, blkid: String, files: [String: String]) -> String {
        var tmpl = Array("/tmp/cb-init-test-XXXXXX".utf8CString)
        let dir = tmpl.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        func write(_ rel: String, _ text: String) {
            let path = dir + "/" + rel
            var parts = path.split(separator: "/").dropLast().map(String.init)
            var cur = ""
            while !parts.isEmpty { cur += "/" + parts.removeFirst(); mkdir(cur, 0o755) }
            let f = fopen(path, "w"); fputs(text, f); fclose(f)
        }
        write("proc/cmdline", cmdline)
        write("run/blkid", blkid)
        for (k, v) in files { write(k, v) }
        return dir
    }

    @Test func bootFindsTheCBCONFIGVolumeAndPlansServices() {
        let root = makeRoot(cmdline: "console=ttyS0", blkid: "/dev/vdb: LABEL=\"CBCONFIG\" TYPE=\"vfat\"\n",
                            files: ["media/CBCONFIG/cloudbios.yaml": "version: 1\nhostname: demo\nvms:\n  - name: demo\n    display: true\n"])
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.boot()
        #expect(pe.completedPhases == ["cmdline", "volumes", "config", "payload", "hostname", "services", "status"])
        #expect(pe.configPath == root + "/media/CBCONFIG/cloudbios.yaml")
        #expect(pe.hostname == "demo")
        #expect(pe.servicePlan.map(\.arguments) == [
            ["daemon", "--config", root + "/media/CBCONFIG/cloudbios.yaml", "--state-dir", "/var/lib/cloudbios", "--nat", "bridge",
             "--users-file", root + "/media/CBCONFIG/users.yaml", "--setup-code-file", root + "/run/cloudbios/setup-code"],
            ["host-console", "--users-file", root + "/media/CBCONFIG/users.yaml", "--setup-code-file", root + "/run/cloudbios/setup-code",
             "--config", root + "/media/CBCONFIG/cloudbios.yaml"],
            ["viewer", "--vm", "demo"]])
    }

    @Test(arguments: [
        ("version: 1\nconsole:\n  vnc: \"127.0.0.1:5900\"\n", ["viewer", "--export-console", "127.0.0.1:5900"]),
        ("version: 1\nconsole:\n  vnc: \"127.0.0.1:5900\"\nvms:\n  - name: g\n    display: true\n",
         ["viewer", "--vm", "g", "--export-console", "127.0.0.1:5900"]),
    ])
    func hostConsoleExportIsStartedWhenConfigured(yaml: String, viewer: [String]) {
        let root = makeRoot(cmdline: "", blkid: "/dev/vdb: LABEL=\"CBCONFIG\" TYPE=\"vfat\"\n",
                            files: ["media/CBCONFIG/cloudbios.yaml": yaml])
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.boot()
        #expect(pe.servicePlan.map(\.name) == ["daemon", "host-console", viewer.contains("--vm") ? "viewer" : "console-vnc"])
        #expect(pe.servicePlan.last?.arguments == viewer)
    }

    @Test func brokenConfigStartsTheDaemonWithDefaultsAndKeepsTheError() {
        let root = makeRoot(cmdline: "cloudbios.display=none", blkid: "/dev/vdb: LABEL=\"CBCONFIG\" TYPE=\"vfat\"\n",
                            files: ["media/CBCONFIG/cloudbios.yaml": "hostname: demo\nvms: [\n"])
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.readConfig = { path in .failure(ConfigReadError("\(path):2:6: unexpected end of flow sequence")) }
        pe.boot()
        #expect(pe.configError?.hasSuffix("cloudbios.yaml:2:6: unexpected end of flow sequence") == true)
        #expect(pe.hostname == "cloudbios")
        // the broken config's volume still keeps the machine's own users
        #expect(pe.servicePlan.map(\.arguments) == [["daemon", "--state-dir", "/var/lib/cloudbios", "--nat", "bridge",
                                                     "--users-file", root + "/media/CBCONFIG/users.yaml",
                                                     "--setup-code-file", root + "/run/cloudbios/setup-code"],
                                                    ["host-console", "--users-file", root + "/media/CBCONFIG/users.yaml",
                                                     "--setup-code-file", root + "/run/cloudbios/setup-code"]])
        #expect(pe.statusInfo().configError == pe.configError)
    }

    @Test func realValidatorReportsFileLineColumn() {
        let root = makeRoot(cmdline: "", blkid: "/dev/vdb: LABEL=\"CBCONFIG\" TYPE=\"vfat\"\n",
                            files: ["media/CBCONFIG/cloudbios.yaml": "version: 1\nhostname: x\npanel:\n  memroy: 12\n"])
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.boot()
        let e = pe.configError ?? ""
        #expect(e.contains(root + "/media/CBCONFIG/cloudbios.yaml:4:3:"), "\(e)")
        #expect(pe.servicePlan.first?.arguments.prefix(5) == ["daemon", "--state-dir", "/var/lib/cloudbios", "--nat", "bridge"])
    }
}

@Suite struct PayloadTests {
    @Test func candidatesPutTheBootMediumFirstThenTheInstalledSystem() {
        let vols = [Volume(device: "/dev/vda2", label: "CB-SYSTEM", type: "ext4"),
                    Volume(device: "/dev/vdb", label: "CBCONFIG", type: "vfat"),
                    Volume(device: "/dev/sr0", label: "CLOUDBIOS", type: "iso9660")]
        let c = Payload.candidates(vols)
        #expect(c.map(\.volume.device) == ["/dev/sr0", "/dev/vda2"])
        #expect(c.map(\.path) == ["boot/cloudbios.sqfs", "cloudbios.sqfs"])
        #expect(Payload.candidates([Volume(device: "/dev/vdb", label: "CBCONFIG")]).isEmpty)
    }

    @Test func aPayloadUnpackedInTheInitramfsIsUsedOnlyWhenItsIdMatches() throws {
        for (inside, expected) in [("abc123", "initramfs"), ("other", nil)] as [(String, String?)] {
            let root = OffTargetBootTests().makeRoot(cmdline: "", blkid: "", files: [
                "usr/lib/cloudbios/payload.id": "abc123\n",
                "usr/lib/cloudbios/payload/cloudbios-payload.id": inside + "\n"])
            let pe = PE(mode: .offTarget(root: root), version: "test")
            pe.boot()
            #expect(pe.completedPhases.contains("payload"))
            #expect(pe.payloadSource == expected)
            // ready only when it is ours (its drivers were there for coldplug)
            #expect(Payload.state(root: root) == (expected == nil ? .pending : .ready))
        }
    }

    @Test func volumesFoundDuringColdplugAreNotProbedAgain() throws {
        var t = Array("/tmp/cb-volcache-XXXXXX".utf8CString)
        let r = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { Files.removeTree(r) }
        for (name, size) in [("sr0", "1000"), ("vda", "1000"), ("vdb", "0")] {
            try Files.makeDirectories(r + "/sys/class/block/\(name)")
            try Files.writeAtomically(r + "/sys/class/block/\(name)/size", size + "\n")
        }
        let calls = Mutex<[String: Int]>([:])
        // sr0: a slow probe with a filesystem; vda: nothing on it
        let cache = VolumeCache { path in
            calls.withLock { $0[path, default: 0] += 1 }
            if path.hasSuffix("sr0") { usleep(300_000); return FilesystemInfo(type: "iso9660", label: "CLOUDBIOS") }
            return nil
        }
        cache.prefetch(sys: r + "/sys", dev: "/dev")
        cache.prefetch(sys: r + "/sys", dev: "/dev")  // nothing new: queued once
        // asked while the slow probe still runs: waits for it, no second probe
        let vols = cache.probeAll(sys: r + "/sys", dev: "/dev")
        #expect(vols == [Volume(device: "/dev/sr0", label: "CLOUDBIOS", type: "iso9660")])
        let counts = calls.withLock { $0 }
        #expect(counts["/dev/sr0"] == 1)
        // a device without a filesystem is probed again (it may not have been readable yet)
        #expect(counts["/dev/vda"] == 2)
        #expect(counts["/dev/vdb"] == nil)  // empty drive: no size
    }

    @Test func volumesAreProbedInProcessLikeBlkid() throws {
        var t = Array("/tmp/cb-vols-XXXXXX".utf8CString)
        let r = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { Files.removeTree(r) }
        for d in ["/sys/class/block/vdb", "/sys/class/block/vdc", "/sys/class/block/vdd", "/sys/class/block/vde", "/sys/class/block/loop0", "/sys/class/block/sr0", "/dev"] {
            try Files.makeDirectories(r + d)
        }
        // vdb: a FAT filesystem labelled CBCONFIG; vdc: no filesystem; loop0
        // (the PE's payload) is not a volume; sr0: an empty drive (size 0);
        // vdd: swap, which PID 1 cannot mount, even labelled CBCONFIG; vde:
        // an ext4 data partition
        for (name, size) in [("vdb", "65536"), ("vdc", "65536"), ("vdd", "65536"), ("vde", "65536"), ("loop0", "65536"), ("sr0", "0")] {
            try Files.writeAtomically(r + "/sys/class/block/\(name)/size", size + "\n")
        }
        let mk = try Launcher("/bin/sh", ["-c", "truncate -s 32M \(r)/dev/vdb \(r)/dev/vdc \(r)/dev/vdd \(r)/dev/vde \(r)/dev/loop0 && mkfs.vfat -n CBCONFIG \(r)/dev/vdb && mkfs.vfat -n OTHER \(r)/dev/loop0 && mkswap -L CBCONFIG \(r)/dev/vdd && mke2fs -q -F -t ext4 -L CB-DATA \(r)/dev/vde"]).run()
        #expect(mk.status == 0, "\(mk.output)")
        // the swap signature is really there: an unfiltered probe sees it
        #expect(Probe.filesystem(of: r + "/dev/vdd")?.type == "swap")
        let vols = Volume.probeAll(sys: r + "/sys", dev: r + "/dev")
        #expect(vols.map(\.device) == [r + "/dev/vdb", r + "/dev/vde"])
        #expect(vols.first?.label == "CBCONFIG")
        #expect(vols.first?.type == "vfat")
        #expect(vols.first?.uuid?.isEmpty == false)
        #expect(vols.last?.label == "CB-DATA")
        #expect(vols.last?.type == "ext4")
    }

    @Test func thePanelPortIsFoundListeningInProcNet() throws {
        var t = Array("/tmp/cb-proc-XXXXXX".utf8CString)
        let r = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { Files.removeTree(r) }
        try Files.makeDirectories(r + "/net")
        let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        // 8443 = 0x20FB: connected (01) on v4, listening (0A) on v6 only
        try Files.writeAtomically(r + "/net/tcp", head + "   0: 0F02000A:20FB 0202000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 1\n")
        try Files.writeAtomically(r + "/net/tcp6", head)
        #expect(!PE.listening(port: 8443, proc: r))
        try Files.writeAtomically(r + "/net/tcp6", head + "   0: 00000000000000000000000000000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n")
        #expect(PE.listening(port: 8443, proc: r))
        #expect(!PE.listening(port: 443, proc: r))
        #expect(!PE.listening(port: 8443, proc: r + "/missing"))
    }

    @Test func kvmModuleFollowsTheCPUFlags() {
        #expect(PE.kvmModules(cpuinfo: "processor\t: 0\nflags\t\t: fpu vme sse2 vmx ept\n") == ["kvm_intel"])
        #expect(PE.kvmModules(cpuinfo: "flags\t\t: fpu svm npt\n") == ["kvm_amd"])
        // a flag name inside another word is not the flag
        #expect(PE.kvmModules(cpuinfo: "flags\t\t: fpu vmx_x svmx\nbugs\t\t: svm\n").isEmpty)
        #expect(PE.kvmModules(cpuinfo: "").isEmpty)
    }

    @Test func storageControllersAreToldFromTheirPCIClass() {
        // PIIX IDE (01 01), AHCI (01 06), NVMe (01 08), virtio-blk (01 00), xHCI (0C 03)
        for storage in ["pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
                        "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
                        "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
                        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
                        "pci:v00001B36d0000000Dsv00000000sd00000000bc0Csc03i30"] {
            #expect(PE.isStorageController(storage), "\(storage)")
        }
        // the class and subclass, as the display drivers are told apart too
        #expect(Modalias.pciClass("pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00") == "0300")
        #expect(Modalias.pciClass("pci:v00001B36d0000000Dsv00000000sd00000000bc0Csc03i30") == "0C03")
        #expect(Modalias.pciClass("virtio:d00000002v00001AF4") == nil)
        #expect(Modalias.pciClass("pci:short") == nil)
        #expect(PE.isStorageController("pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", ataOnly: true))
        #expect(PE.isStorageController("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", ataOnly: true))
        #expect(!PE.isStorageController("pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", ataOnly: true))
        #expect(!PE.isStorageController("pci:v00001B36d0000000Dsv00000000sd00000000bc0Csc03i30", ataOnly: true))
        // virtio-net (02), VGA (03), an SMBus controller (0C 05), not PCI
        for other in ["pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                      "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
                      "pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00",
                      "acpi:PNP0C0C:", "virtio:d00000002v00001AF4", "pci:short"] {
            #expect(!PE.isStorageController(other), "\(other)")
        }
    }

    @Test func payloadDriversAreMatchedOnlyForDevicesWithoutOne() throws {
        var t = Array("/tmp/cb-sysfs-XXXXXX".utf8CString)
        let r = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { Files.removeTree(r) }
        // devices live below devices/; each bus lists its own as links
        let nic = "/devices/pci0000:00/0000:00:03.0", gpu = "/devices/pci0000:00/0000:00:02.0", usb = nic + "/usb1/1-1"
        for d in [nic, gpu, usb, "/devices/system/cpu", "/bus/pci/devices", "/bus/usb/devices", "/bus/virtio/devices"] {
            try Files.makeDirectories(r + d)
        }
        try Files.writeAtomically(r + nic + "/modalias", "pci:v00008086d00001533sv00008086sd00000000bc02sc00i00\n")
        try Files.writeAtomically(r + gpu + "/modalias", "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00\n")
        try Files.writeAtomically(r + usb + "/modalias", "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00\n")
        try Files.writeAtomically(r + "/devices/system/cpu/modalias", "cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0001\n")
        symlink("../../bus/pci/drivers/bochs-drm", r + gpu + "/driver")
        symlink("../../../devices/pci0000:00/0000:00:03.0", r + "/bus/pci/devices/0000:00:03.0")
        symlink("../../../devices/pci0000:00/0000:00:02.0", r + "/bus/pci/devices/0000:00:02.0")
        symlink("../../../devices/pci0000:00/0000:00:03.0/usb1/1-1", r + "/bus/usb/devices/1-1")
        #expect(Modalias.unclaimed(sys: r) == ["pci:v00008086d00001533sv00008086sd00000000bc02sc00i00",
                                               "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"])
        #expect(Modalias.scan(sys: r) == ["pci:v00008086d00001533sv00008086sd00000000bc02sc00i00",
                                          "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
                                          "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
                                          "cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0001"])
    }
}

/// `network.interfaces` as steps, against a set of NICs.
@Suite struct NetworkPlanTests {
    func entries(_ body: String) throws -> NetworkConfig.Interfaces {
        try ConfigLoader.load(path: "c.yaml", text: "version: 1\nnetwork:\n  interfaces:\n" + body).network.interfaces
    }
    let nics = [NetworkPlan.NIC(name: "eth0", mac: "52:54:00:AA:00:01"), NetworkPlan.NIC(name: "eth1", mac: "52:54:00:aa:00:02"),
                NetworkPlan.NIC(name: "eth2", mac: "52:54:00:aa:00:03")]

    @Test func dhcpEverywhereIsNoStep() {
        let p = NetworkPlan.make(.dhcp, nics: nics)
        #expect(p.steps.isEmpty && p.summary == ["eth0: dhcp", "eth1: dhcp", "eth2: dhcp"])
    }

    @Test func staticByMACUnlistedDown() throws {
        let p = NetworkPlan.make(try entries("""
            - match: "52:54:00:aa:00:01"
              addresses: [192.0.2.10/24, "2001:db8::10/64"]
              gateway: 192.0.2.1
              dns: [192.0.2.53]
            - match: eth1
        """), nics: nics)
        #expect(p.steps == [
            .stopDHCP("eth2"), .ip(["-f", "inet", "addr", "flush", "dev", "eth2"]), .ip(["link", "set", "eth2", "down"]),
            .ip(["link", "set", "eth0", "up"]), .stopDHCP("eth0"), .ip(["-f", "inet", "addr", "flush", "dev", "eth0"]),
            .ip(["addr", "add", "192.0.2.10/24", "dev", "eth0"]), .ip(["addr", "add", "2001:db8::10/64", "dev", "eth0"]),
            .ip(["route", "replace", "default", "via", "192.0.2.1", "dev", "eth0"]),
            .ip(["link", "set", "eth1", "up"]), .dhcp("eth1"),
            .resolvConf(["192.0.2.53"]),
        ])
        #expect(p.summary == ["eth0: 192.0.2.10/24 2001:db8::10/64 via 192.0.2.1", "eth1: dhcp"])
        #expect(p.notes == ["eth2: matched by no entry of network.interfaces; left down"])
    }

    @Test func bondThenVLANOnIt() throws {
        let p = NetworkPlan.make(try entries("""
            - name: bond0
              bond: {members: ["eth0", "eth1"]}
              dhcp: false
            - name: vlan7
              vlan: {link: bond0, id: 7}
              address: 10.7.0.2/24
            - match: eth2
        """), nics: nics)
        #expect(p.steps == [
            .modprobe("bonding", ["max_bonds=0"]),
            .write("/sys/class/net/bonding_masters", "+bond0"), .write("/sys/class/net/bond0/bonding/mode", "active-backup"),
            .write("/sys/class/net/bond0/bonding/miimon", "100"),
            .stopDHCP("eth0"), .ip(["-f", "inet", "addr", "flush", "dev", "eth0"]), .ip(["link", "set", "eth0", "down"]),
            .write("/sys/class/net/bond0/bonding/slaves", "+eth0"),
            .stopDHCP("eth1"), .ip(["-f", "inet", "addr", "flush", "dev", "eth1"]), .ip(["link", "set", "eth1", "down"]),
            .write("/sys/class/net/bond0/bonding/slaves", "+eth1"),
            .modprobe("8021q", []),
            .ip(["link", "add", "link", "bond0", "name", "vlan7", "type", "vlan", "id", "7"]),
            .ip(["link", "set", "eth2", "up"]), .dhcp("eth2"),
            .ip(["link", "set", "bond0", "up"]), .stopDHCP("bond0"), .ip(["-f", "inet", "addr", "flush", "dev", "bond0"]),
            .ip(["link", "set", "vlan7", "up"]), .stopDHCP("vlan7"), .ip(["-f", "inet", "addr", "flush", "dev", "vlan7"]),
            .ip(["addr", "add", "10.7.0.2/24", "dev", "vlan7"]),
        ])
        #expect(p.summary == ["eth2: dhcp", "bond0: bond active-backup of eth0+eth1", "vlan7: 10.7.0.2/24 vlan 7 on bond0"])
    }

    @Test func aVLANOnAMissingLinkIsNotMade() throws {
        let p = NetworkPlan.make(try entries("""
            - {name: v5, vlan: {link: eth9, id: 5}}
            - {match: "eth*"}
        """), nics: nics)
        #expect(p.notes == ["v5: its link eth9 is not here; not made"])
        #expect(!p.steps.contains { if case .ip(let a) = $0 { return a.contains("vlan") } else { return false } })
    }
}

@Suite struct StateStorageTests {
    @Test func whereTheStateLivesFollowsTheMountTableAndTheLabel() {
        let table = [
            Mount.Entry(source: "rootfs", target: "/", type: "rootfs", options: "rw"),
            Mount.Entry(source: "tmpfs", target: "/var/lib/cloudbios", type: "tmpfs", options: "rw"),
        ]
        let ram = StateStorage.describe("/var/lib/cloudbios", table: table, label: { _ in nil }, installed: { _ in false })
        #expect(ram.kind == .ram && ram.note.contains("RAM"))
        #expect(ram.json["persistent"] == .bool(false))
        let disk = [table[0], Mount.Entry(source: "/dev/vdb1", target: "/var/lib/cloudbios", type: "ext4", options: "rw")]
        let data = StateStorage.describe("/var/lib/cloudbios", table: disk, label: { $0 == "/dev/vdb1" ? "CB-DATA" : nil }, installed: { _ in false })
        #expect(data.kind == .dataPartition && data.device == "/dev/vdb1" && data.label == "CB-DATA")
        let inst = StateStorage.describe("/var/lib/cloudbios", table: disk, label: { _ in "CB-DATA" }, installed: { _ in true })
        #expect(inst.kind == .installed)
        let other = StateStorage.describe("/var/lib/cloudbios", table: disk, label: { _ in "home" }, installed: { _ in false })
        #expect(other.kind == .directory)
    }

    @Test func copyTreeKeepsFilesModesLinksAndHoles() throws {
        let base = "/tmp/cb-statecopy-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { Files.removeTree(base) }
        try Files.makeDirectories(base + "/from/images")
        try Files.makeDirectories(base + "/from/tls")
        try Files.makeDirectories(base + "/to")
        try Files.writeAtomically(base + "/from/images/a.iso", Array(repeating: UInt8(7), count: 3000))
        try Files.writeAtomically(base + "/from/tls/key.pem", "secret", mode: 0o600)
        _ = symlink("images/a.iso", base + "/from/link")
        // 8 MiB with 4 KiB of data in the middle
        let fd = open(base + "/from/images/disk.raw", O_WRONLY | O_CREAT, 0o644)
        _ = ftruncate(fd, 8 << 20)
        _ = pwrite(fd, [UInt8](repeating: 1, count: 4096), 4096, 4 << 20)
        close(fd)
        #expect(try StateStorage.copyTree(base + "/from", to: base + "/to") == 3)
        #expect(try Files.read(base + "/to/images/a.iso") == Array(repeating: UInt8(7), count: 3000))
        #expect(Files.readTrimmed(base + "/to/tls/key.pem") == "secret")
        var st = stat()
        _ = stat(base + "/to/tls/key.pem", &st)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(Files.readLink(base + "/to/link") == "images/a.iso")
        _ = stat(base + "/to/images/disk.raw", &st)
        #expect(st.st_size == 8 << 20)
        #expect(st.st_blocks * 512 < 1 << 20, "holes kept: \(st.st_blocks) blocks")
        let raw = try Files.read(base + "/to/images/disk.raw", limit: 16 << 20)
        #expect(raw[(4 << 20)..<((4 << 20) + 4096)].allSatisfy { $0 == 1 } && raw[0..<(4 << 20)].allSatisfy { $0 == 0 })
    }
}
