#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import CDisks

extension Payload {
    /// Where a payload may be, best first: the boot medium's /boot, then an
    /// installed system partition's root. The id decides which one is ours.
    public static func candidates(_ volumes: [Volume]) -> [(volume: Volume, path: String)] {
        volumes.filter { $0.label == PELabel.bootMedium }.map { ($0, "boot/" + fileName) }
            + volumes.filter { $0.label == PELabel.system }.map { ($0, fileName) }
    }

    /// The candidates and, after them, an installed system's slot b
    /// (`slot-b/` on the system partition, written by an upgrade).
    public static func candidatesWithSlots(_ volumes: [Volume]) -> [(volume: Volume, path: String)] {
        candidates(volumes) + volumes.filter { $0.label == PELabel.system }.map { ($0, "slot-b/" + fileName) }
    }
}

extension PE {
    /// Starts mounting the payload that belongs to this core, on a thread of
    /// its own, as soon as the volumes are known: straight from the medium
    /// it is on, then reading the daemon's libraries ahead (the daemon's TLS
    /// and HTTP stack is in it, so the panel waits for this).
    func startPayloadMount(_ volumes: [Volume]) {
        guard onTarget, let want = Files.readTrimmed(root + Payload.idFile),
              !Payload.matches(root + Payload.mountPoint, want) else { return }
        payloadMount.begin()
        spawnThread { [self] in
            let mounted = self.findAndMountPayload(want: want, volumes: volumes)
            if mounted != nil { self.readAheadPanelLibraries() }
            self.payloadMount.finish(mounted)
        }
    }

    /// Once the mount is done and the panel listens (the rescue shell and a
    /// headless install do not wait for the panel), loads the payload's
    /// drivers and reports it ready (starting a VM and the install phase
    /// wait for that through `Payload.waitUsable`), then copies it to RAM
    /// under the mount, so the boot medium can be removed.
    func mountPayload(_ cmdline: KernelCommandLine, config: ConfigOutcome) {
        guard let want = Files.readTrimmed(root + Payload.idFile) else { return } // a core without a payload
        if Payload.matches(root + Payload.mountPoint, want) && !payloadMount.started {
            // its drivers were there for coldplug
            log("payload: in the initramfs")
            state.update { $0.payloadSource = "initramfs" }
            markPayloadReady()
            return
        }
        guard onTarget else { return }
        // Loading drivers and copying while the daemon starts slows both.
        let panelPort = cmdline.rescue || config.config?.install != nil ? nil : Self.panelPort(config)
        spawnThread { [self] in
            guard let (src, loop) = self.payloadMount.wait() else { return }
            self.state.update { $0.payloadSource = src }
            if let port = panelPort {
                let t0 = Clock.monotonic()
                while !Self.listening(port: port) && Clock.monotonic() - t0 < 5 { usleep(50_000) }
            }
            self.loadPayloadDrivers()
            self.markPayloadReady()
            self.copyPayloadToRAM(src, loop: loop)
        }
    }

    /// Blocking: mounts the first matching payload from where it is.
    private func findAndMountPayload(want: String, volumes start: [Volume]) -> (source: String, loop: String)? {
        let t0 = Clock.monotonic()
        // (coldplug loaded them already unless it gave up early)
        if !Files.exists("/sys/module/loop") || !Files.exists("/sys/module/squashfs") {
            run("/sbin/modprobe", ["-a", "-q", "loop", "squashfs"])
        }
        // A USB stick may still be settling: look again for a while.
        let deadline = t0 + 15
        var volumes = start
        var tried = Set<String>()
        var rounds = 0
        while true {
            for c in Payload.candidatesWithSlots(volumes) where !tried.contains(c.volume.device + "/" + c.path) {
                tried.insert(c.volume.device + "/" + c.path)
                guard let dir = mountVolume(c.volume) else { continue }
                let src = dir + "/" + c.path
                guard Files.exists(src) else { continue }
                if let loop = attachPayload(src, want: want) {
                    log("payload: \(src) (\(c.volume.device)) mounted at \(Payload.mountPoint) in \(Supervisor.format(Clock.monotonic() - t0)) s")
                    return (src, loop)
                }
            }
            if Clock.monotonic() >= deadline { break }
            usleep(250_000)
            // a boot medium whose driver has not loaded yet (its uevent
            // lost or still queued): look for unclaimed devices once a second
            rounds += 1
            if rounds % 4 == 0 {
                let aliases = Modalias.unclaimed(sys: "/sys").filter { !$0.hasPrefix("cpu:") }.sorted()
                // (quietly: the payload's own drivers, display and KVM
                // among them, cannot load before it is there)
                if !aliases.isEmpty { _ = try? Launcher("/sbin/modprobe", ["-a", "-q", "-b"] + aliases).run() }
            }
            volumes = Volume.probeAll()
        }
        let why = "no \(Payload.fileName) of this build (id \(want)) on a \(PELabel.bootMedium) or \(PELabel.system) volume"
        try? Files.writeAtomically(Payload.failedMarker, why + "\n")
        log("payload: ERROR: \(why); the panel, virtual machines and installs are unavailable")
        return nil
    }

    /// Reads the daemon's TLS and HTTP libraries once, so they are in the
    /// page cache, decompressed, by the time the starting daemon loads them
    /// (it would otherwise fault them in from the medium page by page).
    func readAheadPanelLibraries() {
        let list = (try? Files.readString(root + Payload.mountPoint + "/" + Payload.panelListName)) ?? ""
        var buf = [UInt8](repeating: 0, count: 1 << 17)
        for path in list.split(separator: "\n") where path.hasPrefix("/") {
            let fd = open(root + Payload.mountPoint + path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            while buf.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
            close(fd)
        }
    }

    /// Copies the mounted payload to RAM and moves its loop device onto the
    /// copy: nothing reads the boot medium after this.
    private func copyPayloadToRAM(_ src: String, loop: String) {
        let t0 = Clock.monotonic()
        do {
            try Files.copy(src, to: Payload.ramCopy)
        } catch {
            log("payload: cannot copy \(src) to RAM: \(error); it is read from the boot medium, which must stay in")
            Files.remove(Payload.ramCopy)
            return
        }
        let rc = cb_loop_change_file(loop, Payload.ramCopy)
        if rc != 0 {
            log("payload: cannot move \(loop) onto the RAM copy: \(SystemError("LOOP_CHANGE_FD", errno: rc)); it is read from the boot medium, which must stay in")
            Files.remove(Payload.ramCopy)
            return
        }
        let mib = (Files.size(Payload.ramCopy) ?? 0) >> 20
        let name = loop.split(separator: "/").last.map(String.init) ?? loop
        let backing = Files.readTrimmed("/sys/block/\(name)/loop/backing_file") ?? "?"
        log("payload: copied to RAM (\(mib) MiB) in \(Supervisor.format(Clock.monotonic() - t0)) s; the boot medium is no longer read (\(loop) reads \(backing))")
    }

    /// The payload's drivers: KVM for the CPU's virtualization extension and
    /// whatever matches a device still without a driver (the NIC of a
    /// physical machine, a PS/2 mouse). Run before the payload is reported
    /// ready, so the KVM probe finds /dev/kvm and a NIC has its DHCP going.
    func loadPayloadDrivers() {
        let t0 = Clock.monotonic()
        let before = Set(loadedModules())
        let cpuinfo = (try? Files.readString("/proc/cpuinfo")) ?? ""
        let names = Self.kvmModules(cpuinfo: cpuinfo) + Modalias.unclaimed(sys: "/sys").filter { !$0.hasPrefix("cpu:") }.sorted()
        if !names.isEmpty { run("/sbin/modprobe", ["-a", "-q", "-b"] + names) }
        let loaded = loadedModules().filter { !before.contains($0) }.sorted()
        log("payload: drivers: " + (loaded.isEmpty ? "none needed" : "loaded \(loaded.joined(separator: " ")) in \(Supervisor.format(Clock.monotonic() - t0)) s"))
    }

    /// Whether a TCP socket listens on `port` (/proc/net/tcp and tcp6).
    static func listening(port: Int, proc: String = "/proc") -> Bool {
        let hex = String(port, radix: 16, uppercase: true)
        let want = ":" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        for file in ["/net/tcp", "/net/tcp6"] {
            for line in ((try? Files.readString(proc + file)) ?? "").split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                if f.count > 3, f[1].hasSuffix(want), f[3] == "0A" { return true }
            }
        }
        return false
    }

    /// The KVM module for the CPU's virtualization extension, if it has one.
    static func kvmModules(cpuinfo: String) -> [String] {
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        return (flags.contains("vmx") ? ["kvm_intel"] : []) + (flags.contains("svm") ? ["kvm_amd"] : [])
    }

    func markPayloadReady() {
        try? Files.makeDirectories(Files.parent(of: root + Payload.readyMarker))
        try? Files.writeAtomically(root + Payload.readyMarker, "")
    }

    /// Mounts `src` read-only through a loop device; its path when it is
    /// the payload this core wants.
    private func attachPayload(_ src: String, want: String) -> String? {
        let loop: String
        do {
            loop = try Mount.throughLoop(src, on: Payload.mountPoint, type: "squashfs", flags: UInt(MS_RDONLY | MS_NODEV))
        } catch {
            log("payload: cannot mount \(src): \(error)")
            return nil
        }
        if Payload.matches(Payload.mountPoint, want) { return loop }
        log("payload: \(src) belongs to another CloudBIOS build (id \(Files.readTrimmed(Payload.mountPoint + "/" + Payload.idName) ?? "none"), this core wants \(want)); skipped")
        _ = umount2(Payload.mountPoint, Int32(MNT_DETACH))
        return nil
    }
}

/// The payload's mount, started in the volumes phase and waited for by the
/// payload phase's thread.
final class PayloadMount: Sendable {
    private struct State {
        var started = false
        var done = false
        var result: (source: String, loop: String)?
    }
    private let state = Mutex(State())

    var started: Bool { state.withLock { $0.started } }
    func begin() { state.withLock { $0.started = true } }
    func finish(_ result: (source: String, loop: String)?) {
        state.withLock { $0.result = result; $0.done = true }
    }

    /// Blocks until the mount is done: where from and on which loop device,
    /// nil when it failed or never started.
    func wait() -> (source: String, loop: String)? {
        while true {
            let (started, done, result) = state.withLock { ($0.started, $0.done, $0.result) }
            if !started || done { return result }
            usleep(10_000)
        }
    }
}
