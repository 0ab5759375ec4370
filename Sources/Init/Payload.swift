#if canImport(Glibc)
import Glibc
#endif
import Platform

extension Payload {
    /// Where a payload may be, best first: the boot medium's /boot, then an
    /// installed system partition's root. The id decides which one is ours.
    public static func candidates(_ volumes: [Volume]) -> [(volume: Volume, path: String)] {
        volumes.filter { $0.label == PELabel.bootMedium }.map { ($0, "boot/" + fileName) }
            + volumes.filter { $0.label == PELabel.system }.map { ($0, fileName) }
    }
}

extension PE {
    /// Mounts the payload that belongs to this core, on its own thread: the
    /// panel does not need it, so the boot goes on. The daemon (starting a
    /// VM) and the install phase wait for it through `Payload.waitUsable`.
    func mountPayload() {
        guard let want = Files.readTrimmed(root + Payload.idFile) else { return } // a core without a payload
        if Payload.matches(root + Payload.mountPoint, want) {
            // its drivers were there for coldplug
            log("payload: in the initramfs")
            payloadSource = "initramfs"
            markPayloadReady()
            return
        }
        guard onTarget else { return }
        let volumes = self.volumes
        // The panel comes first: copying the payload while the daemon starts
        // slows both. A headless install (no daemon before it) and the
        // rescue shell do not wait.
        let panelPort = cmdline.rescue || peek.installs ? nil : (configError == nil ? peek.panelPort ?? 8443 : 8443)
        spawnThread { [self] in
            if let port = panelPort {
                let t0 = Clock.monotonic()
                while !Self.listening(port: port) && Clock.monotonic() - t0 < 5 { usleep(50_000) }
            }
            if let src = self.findAndMountPayload(want: want, volumes: volumes) {
                self.payloadSource = src
            }
        }
    }

    /// Blocking: copies the first matching payload to RAM and mounts it.
    private func findAndMountPayload(want: String, volumes start: [Volume]) -> String? {
        let t0 = Clock.monotonic()
        run("/sbin/modprobe", ["-a", "-q", "loop", "squashfs"])
        // A USB stick may still be settling: look again for a while.
        let deadline = t0 + 15
        var volumes = start
        var tried = Set<String>()
        var rounds = 0
        while true {
            for c in Payload.candidates(volumes) where !tried.contains(c.volume.device) {
                tried.insert(c.volume.device)
                guard let dir = mountVolume(c.volume) else { continue }
                let src = dir + "/" + c.path
                guard Files.exists(src) else { continue }
                if attachPayload(src, want: want) {
                    let mib = (Files.size(Payload.ramCopy) ?? 0) >> 20
                    log("payload: \(src) (\(c.volume.device)) copied to RAM (\(mib) MiB) and mounted at \(Payload.mountPoint) in \(Supervisor.format(Clock.monotonic() - t0)) s")
                    loadPayloadDrivers()
                    markPayloadReady()
                    return src
                }
            }
            if Clock.monotonic() >= deadline { break }
            usleep(250_000)
            // a boot medium whose driver has not loaded yet (its uevent
            // lost or still queued): look for unclaimed devices once a second
            rounds += 1
            if rounds % 4 == 0 {
                let aliases = Modalias.unclaimed(sys: "/sys").filter { !$0.hasPrefix("cpu:") }.sorted()
                if !aliases.isEmpty { run("/sbin/modprobe", ["-a", "-q", "-b"] + aliases) }
            }
            volumes = Volume.probeAll()
        }
        let why = "no \(Payload.fileName) of this build (id \(want)) on a \(PELabel.bootMedium) or \(PELabel.system) volume"
        try? Files.writeAtomically(Payload.failedMarker, why + "\n")
        log("payload: ERROR: \(why); virtual machines and installs are unavailable")
        return nil
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

    private func attachPayload(_ src: String, want: String) -> Bool {
        do {
            try Files.copy(src, to: Payload.ramCopy)
        } catch {
            log("payload: cannot copy \(src): \(error)")
            Files.remove(Payload.ramCopy)
            return false
        }
        guard run("/bin/mount", ["-t", "squashfs", "-o", "ro,loop", Payload.ramCopy, Payload.mountPoint]) == 0 else {
            log("payload: cannot mount \(src)")
            Files.remove(Payload.ramCopy)
            return false
        }
        if Payload.matches(Payload.mountPoint, want) { return true }
        log("payload: \(src) belongs to another CloudBIOS build (id \(Files.readTrimmed(Payload.mountPoint + "/" + Payload.idName) ?? "none"), this core wants \(want)); skipped")
        _ = umount2(Payload.mountPoint, Int32(MNT_DETACH))
        Files.remove(Payload.ramCopy)
        return false
    }
}
