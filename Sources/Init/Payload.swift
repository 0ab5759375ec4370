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
            log("payload: in the initramfs")
            payloadSource = "initramfs"
            return
        }
        guard onTarget else { return }
        let volumes = self.volumes
        spawnThread { [self] in
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
                    return src
                }
            }
            if Clock.monotonic() >= deadline { break }
            usleep(250_000)
            // a boot medium whose driver has not loaded yet (its uevent
            // lost or still queued): look for unclaimed devices once a second
            rounds += 1
            if rounds % 4 == 0 {
                let aliases = Modalias.scan("/sys/devices").filter { !$0.hasPrefix("cpu:") }.sorted()
                if !aliases.isEmpty { run("/sbin/modprobe", ["-a", "-q", "-b"] + aliases) }
            }
            volumes = Volume.parseBlkid(capture("/usr/sbin/blkid", ["-c", "/dev/null"]))
        }
        let why = "no \(Payload.fileName) of this build (id \(want)) on a \(PELabel.bootMedium) or \(PELabel.system) volume"
        try? Files.writeAtomically(Payload.failedMarker, why + "\n")
        log("payload: ERROR: \(why); virtual machines and installs are unavailable")
        return nil
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
