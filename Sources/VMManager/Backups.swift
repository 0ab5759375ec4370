#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU

/// Backups of VMs: full and incremental, live through QMP while the VM
/// runs (a stopped VM's disks are opened by a paused QEMU of their own, so
/// both take the same path), restore into a new VM, verify, delete and
/// retention. The target's layout and the chain rules are `BackupCatalog`'s.
///
/// Incremental backups rest on QEMU's persistent dirty bitmaps: each backup
/// `ID` starts a bitmap `cloudbios-ID` on every qcow2 disk, in one
/// `transaction` with the backup jobs, so the bitmap holds exactly the
/// writes after the backup's point in time. The next incremental copies
/// only those blocks (`sync: bitmap`, `bitmap-mode: never`, into a qcow2
/// whose backing file is the previous backup's) and starts its own bitmap
/// the same way; the old one is dropped only once the new backup is whole
/// on the target. A job that fails leaves the old bitmap as it was (QEMU
/// merges what was written meanwhile back into it), so nothing is lost.
/// A bitmap QEMU reports missing, inconsistent (its VM was killed) or busy,
/// a disk resized or added, or an earlier backup cut short, makes the next
/// backup a full one, and the task says why.
extension VMManager {
    /// Where backups go (`backups.target`, by default `STATE/backups`; a
    /// volume given by label is mounted at `STATE/backup-target/LABEL` and
    /// holds them in `cloudbios-backups/`).
    public nonisolated var backupDirectory: String {
        guard let t = options.backupTarget else { return "\(stateDir)/backups" }
        guard let label = Self.targetLabel(t) else { return t }
        return "\(labelMountPoint(label))/cloudbios-backups"
    }

    nonisolated func labelMountPoint(_ label: String) -> String { "\(stateDir)/backup-target/\(label)" }

    /// `LABEL=NAME` → NAME (checked: letters, digits, `-`, `_`).
    static func targetLabel(_ target: String) -> String? {
        guard target.hasPrefix("LABEL=") else { return nil }
        let l = String(target.dropFirst(6))
        return Names.checkVolumeLabel(l) == nil ? l : nil
    }

    nonisolated var backups: BackupCatalog { BackupCatalog(directory: backupDirectory) }

    static let bitmapPrefix = "cloudbios-"
    static let jobPrefix = "cbbackup-"

    // MARK: - list

    /// `GET /api/v1/backups`: newest first, of one VM when `vm` is given.
    public func listBackups(vm: String? = nil) throws(VMError) -> [BackupRecord] {
        if let vm, let e = Names.checkVM(vm) { throw .badRequest(e) }
        try checkBackupTarget()
        return backups.all().values.filter { vm == nil || $0.vm == vm }.sorted { ($0.time, $0.id) > ($1.time, $1.id) }
    }

    public func backup(_ id: String) throws -> BackupRecord {
        if let e = BackupRecord.checkID(id) { throw VMError.badRequest(e) }
        try checkBackupTarget()
        guard let r = backups.all()[id] else { throw BackupError.notFound(id: id) }
        return r
    }

    // MARK: - take

    /// `POST /api/v1/vms/{name}/backups`: starts a backup task.
    public func startBackup(_ name: String, mode: BackupMode) throws(VMError) -> TaskInfo {
        // a running VM is backed up as it runs (disks added since apply at its next start)
        guard let spec = runtimes[name]?.live ?? specs[name] else { throw .notFound(name: name) }
        try checkBackupTarget()
        guard !tasks.running(name, kind: "backup") else { throw .conflict("VM '\(name)' is being backed up already") }
        guard !busy.contains(name) else { throw .conflict("VM '\(name)' is busy; try again") }
        if let rt = runtimes[name], rt.state == .starting || rt.qmp == nil {
            throw .conflict("VM '\(name)' is starting or its QMP socket does not answer; try again")
        }
        guard !spec.disks.isEmpty else { throw .invalid("VM '\(name)' has no disks to back up") }
        let p = paths(name)
        for d in spec.disks where !Files.exists(p.disk(d.id ?? "")) {
            throw .conflict("VM '\(name)': disk '\(d.id ?? "")' does not exist yet (the VM never started)")
        }
        let stopped = runtimes[name] == nil
        // a stopped VM's disks are ours until the backup ends
        if stopped { busy.insert(name) }
        let task = tasks.begin("backup", on: name)
        Task {
            await self.runBackup(task.id, name, spec, mode: mode, stopped: stopped)
            if stopped { await self.release(name) }
        }
        return task
    }

    func release(_ name: String) { busy.remove(name) }

    func checkBackupTarget() throws(VMError) {
        if let t = options.backupTarget, t.hasPrefix("LABEL=") {
            guard let label = Self.targetLabel(t) else { throw .invalid("backups.target \(Names.clip(t)) is not a valid volume label") }
            try mountTarget(label)
        }
        let dir = backupDirectory
        do { try QEMUCommand.checkPath(dir) } catch { throw .invalid("backups.target: \(error)") }
        do { try Files.makeDirectories(dir, mode: 0o700) } catch {
            throw .unavailable("backups.target \(dir) cannot be created: \(error)")
        }
    }

    /// Mounts the volume labelled `label` (found by blkid) at its mount
    /// point, unless it is mounted there already.
    func mountTarget(_ label: String) throws(VMError) {
        let dir = labelMountPoint(label)
        if Mount.isMounted(dir) { return }
        guard let blkid = Launcher.which("blkid") else { throw .unavailable("backups.target LABEL=\(label): blkid is not installed") }
        guard let found = try? Launcher(blkid, ["-L", label]).run(mergeError: false), found.status == 0,
              let device = found.output.split(separator: "\n").first.map(String.init), device.hasPrefix("/dev/") else {
            throw .unavailable("backups.target: no volume labelled \(label) is attached")
        }
        let type = (try? Launcher(blkid, ["-o", "value", "-s", "TYPE", device]).run(mergeError: false))?.output
            .split(separator: "\n").first.map(String.init) ?? ""
        guard !type.isEmpty, type.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7a) }) else {
            throw .unavailable("backups.target LABEL=\(label): \(device) has no filesystem blkid knows")
        }
        do {
            try Mount.mount(device, on: dir, type: type, flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC))
        } catch {
            throw .unavailable("backups.target LABEL=\(label): cannot mount \(device) (\(type)): \(error)")
        }
        Log.info("backup target: \(device) (\(type), label \(label)) mounted at \(dir)")
    }

    /// A QMP connection to the VM's disks: its own QEMU's when it runs, else
    /// a paused QEMU (no machine, no guest) holding only the disks.
    struct DiskHolder {
        var qmp: QMPClient
        var helper: pid_t?
    }

    func openDisks(_ name: String, _ spec: VMSpec, stopped: Bool) async throws -> DiskHolder {
        if !stopped {
            guard let qmp = runtimes[name]?.qmp else { throw VMError.notRunning(name: name) }
            return DiskHolder(qmp: qmp, helper: nil)
        }
        guard let qemu = Launcher.which(options.qemuBinary) else { throw VMError.unavailable("\(options.qemuBinary) is not installed") }
        let p = paths(name)
        try Files.makeDirectories(p.runDir, mode: 0o700)
        let socket = "\(p.runDir)/backup-qmp.sock"
        Files.remove(socket)
        Self.killStaleDiskHolder(p)
        var argv = ["-S", "-nodefaults", "-no-user-config", "-machine", "none", "-display", "none",
                    "-pidfile", "\(p.runDir)/backup-qemu.pid",
                    "-chardev", "socket,id=qmp,path=\(QEMUCommand.escape(socket)),server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
        for d in spec.disks {
            let id = d.id ?? ""
            argv += ["-drive", "if=none,id=disk-\(id),format=qcow2,file=\(QEMUCommand.escape(p.disk(id)))"]
        }
        let log = try FileDescriptor.open("\(p.runDir)/backup-qemu.log", O_WRONLY | O_CREAT | O_TRUNC)
        defer { log.close() }
        let pid = try Launcher(qemu, argv).spawn(stdout: log, stderr: log)
        do {
            let qmp = try await QMPClient.connect(path: socket, timeout: 10)
            return DiskHolder(qmp: qmp, helper: pid)
        } catch {
            kill(pid, SIGKILL)
            _ = try? await blocking { Launcher.wait(pid) }
            let why = (Files.readTrimmed("\(p.runDir)/backup-qemu.log") ?? "").trimmedLines(2)
            throw VMError.conflict("VM '\(name)': its disks cannot be opened for the backup: \(why.isEmpty ? "\(error)" : why)")
        }
    }

    /// The paused QEMU of a stopped VM's backup that outlived its daemon
    /// (killed during the backup) holds the disks' locks: it goes.
    static func killStaleDiskHolder(_ p: VMPaths) {
        let pidFile = "\(p.runDir)/backup-qemu.pid"
        if let t = Files.readTrimmed(pidFile), let pid = Int32(t), processAlive(pid),
           ProcStats.cmdline(pid).contains(where: { $0.contains("\(p.runDir)/backup-qmp.sock") }) {
            kill(pid, SIGKILL)
            Log.warning("VM \(p.name): stopped the disks' QEMU (pid \(pid)) left by a backup cut short")
        }
        Files.remove(pidFile)
    }

    /// Set while a restore writes the VM's disks; a VM that has it cannot
    /// start (its disks would be made blank).
    nonisolated func restoreMarker(_ name: String) -> String { "\(paths(name).diskDir)/restore-incomplete" }

    func closeDisks(_ h: DiskHolder, _ name: String) async {
        guard let pid = h.helper else { return }
        _ = try? await h.qmp.execute("quit", timeout: 5)
        h.qmp.close()
        let done = try? await blocking { Reaper.shared.wait(pid, timeout: 10) }
        if done == nil || done! == nil { kill(pid, SIGKILL); _ = try? await blocking { Launcher.wait(pid) } }
        Files.remove("\(paths(name).runDir)/backup-qmp.sock")
        Files.remove("\(paths(name).runDir)/backup-qemu.pid")
    }

    /// The bitmaps QEMU has on each of the VM's disks, by disk id.
    static func bitmaps(_ qmp: QMPClient) async throws -> [String: [JSONValue]] {
        try await blockState(qmp).bitmaps
    }

    /// Each of the VM's disks' bitmaps and virtual size, as QEMU has them, by disk id.
    static func blockState(_ qmp: QMPClient) async throws -> (bitmaps: [String: [JSONValue]], sizes: [String: Int64]) {
        let r = try await qmp.execute("query-block", timeout: 10)
        var maps: [String: [JSONValue]] = [:]
        var sizes: [String: Int64] = [:]
        for dev in r.arrayValue ?? [] {
            guard let device = dev["device"]?.stringValue, device.hasPrefix("disk-") else { continue }
            let id = String(device.dropFirst(5))
            maps[id] = dev["inserted"]?["dirty-bitmaps"]?.arrayValue ?? dev["dirty-bitmaps"]?.arrayValue ?? []
            if let vs = dev["inserted"]?["image"]?["virtual-size"]?.int64Value { sizes[id] = vs }
        }
        return (maps, sizes)
    }

    /// Jobs and target nodes a backup left in QEMU (the daemon killed
    /// during it): cancelled and removed before the next one.
    static func clearLeftovers(_ qmp: QMPClient) async {
        for _ in 0..<100 {
            guard let jobs = try? await qmp.execute("query-jobs", timeout: 10) else { return }
            let ours = (jobs.arrayValue ?? []).filter { $0["id"]?.stringValue?.hasPrefix(jobPrefix) == true }
            if ours.isEmpty { break }
            for j in ours {
                let id = j["id"]!.stringValue!
                if j["status"]?.stringValue == "concluded" {
                    _ = try? await qmp.execute("job-dismiss", arguments: .object(["id": .string(id)]))
                } else {
                    _ = try? await qmp.execute("job-cancel", arguments: .object(["id": .string(id)]))
                }
            }
            await sleep(seconds: 0.1)
        }
        if let nodes = try? await qmp.execute("query-named-block-nodes", arguments: .object(["flat": .bool(true)]), timeout: 10) {
            for n in nodes.arrayValue ?? [] {
                guard let nn = n["node-name"]?.stringValue, nn.hasPrefix(jobPrefix) else { continue }
                _ = try? await qmp.execute("blockdev-del", arguments: .object(["node-name": .string(nn)]))
            }
        }
    }

    func runBackup(_ taskID: String, _ name: String, _ spec: VMSpec, mode: BackupMode, stopped: Bool) async {
        tasks.update(taskID) { $0.state = .running; $0.message = stopped ? "opening the disks of stopped VM '\(name)'" : "preparing" }
        let begun = now()
        let catalog = backups
        let id = BackupRecord.newID(wall: Clock.wall())
        let time = BackupRecord.timestamp(Clock.wall())
        let diskIDs = spec.disks.compactMap(\.id)
        var holder: DiskHolder?
        var targetsAdded: [String] = []
        var bitmapAdded = false
        do {
            let h = try await openDisks(name, spec, stopped: stopped)
            holder = h
            let qmp = h.qmp
            await Self.clearLeftovers(qmp)

            // what an earlier backup cut short left: the chain is not trusted
            var reasons: [String] = []
            for part in catalog.partials() where part.vm == name {
                reasons.append("backup \(part.id) of '\(name)' was interrupted")
                Files.removeTree(catalog.partialPath(part.id))
            }
            let all = catalog.all()
            let (maps, sizes) = try await Self.blockState(qmp)
            for d in diskIDs where sizes[d] == nil { throw VMError.conflict("VM '\(name)': QEMU does not have its disk '\(d)' (added since it started?)") }

            var parent: BackupRecord?
            if mode != .full {
                if let last = BackupChains.latest(of: name, in: all) {
                    if BackupChains.chain(last.id, in: all) == nil {
                        reasons.append("the chain of backup \(last.id) is incomplete on the target")
                    }
                    for d in diskIDs {
                        let bitmap = maps[d]?.first { $0["name"]?.stringValue == Self.bitmapPrefix + last.id }
                        if !last.disks.contains(where: { $0.id == d && $0.virtualSize == sizes[d] }) {
                            reasons.append("disk '\(d)' is new or resized since backup \(last.id)")
                        } else if !Files.exists("\(catalog.path(last.id))/\(d).qcow2") {
                            reasons.append("backup \(last.id) lacks its file of disk '\(d)'")
                        } else if let b = bitmap {
                            if b["inconsistent"]?.boolValue == true {
                                reasons.append("the dirty bitmap of disk '\(d)' is inconsistent (the VM's QEMU did not stop cleanly)")
                            } else if b["busy"]?.boolValue == true || b["recording"]?.boolValue == false {
                                reasons.append("the dirty bitmap of disk '\(d)' is in use or not recording")
                            }
                        } else {
                            reasons.append("disk '\(d)' has no dirty bitmap since backup \(last.id) (lost with an unclean stop, or never made)")
                        }
                    }
                    if reasons.isEmpty { parent = last }
                } else {
                    reasons.append("'\(name)' has no earlier backup")
                }
            }
            let kind: BackupKind = parent == nil ? .full : .incremental
            let note = parent == nil && mode != .full && !reasons.isEmpty
                ? "full backup instead of incremental: " + reasons.joined(separator: "; ") : nil
            if let note { Log.info("VM \(name): \(note)") }

            // the target files: fresh qcow2s, over the parent's for an incremental
            let dir = catalog.partialPath(id)
            try Files.makeDirectories(dir, mode: 0o700)
            try Files.writeAtomically("\(dir)/vm", name + "\n")
            for d in diskIDs {
                var argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
                if let parent { argv += ["-b", "../\(parent.id)/\(d).qcow2", "-F", "qcow2"] }
                // a full backup copies every block: large clusters let the job copy
                // in large pieces (an incremental keeps the bitmap's 64 KiB)
                else { argv += ["-o", "cluster_size=\(Self.fullBackupClusterSize)"] }
                argv += ["\(dir)/\(d).qcow2", String(sizes[d]!)]
                try await runTool(argv)
            }
            for d in diskIDs {
                _ = try await qmp.execute("blockdev-add", arguments: .object([
                    "driver": .string("qcow2"), "node-name": .string(Self.jobPrefix + d),
                    // not flushed by QEMU: the checksum pass syncs each file to the
                    // disk while it reads it back from the page cache
                    "cache": .object(["no-flush": .bool(true)]),
                    "file": .object(["driver": .string("file"), "filename": .string("\(dir)/\(d).qcow2")])]), timeout: 30)
                targetsAdded.append(Self.jobPrefix + d)
            }
            // one transaction: each new bitmap starts exactly where its backup's copy does
            var actions: [JSONValue] = []
            for d in diskIDs {
                actions.append(.object(["type": .string("block-dirty-bitmap-add"), "data": .object([
                    "node": .string("disk-\(d)"), "name": .string(Self.bitmapPrefix + id), "persistent": .bool(true)])]))
                var job: [String: JSONValue] = ["device": .string("disk-\(d)"), "target": .string(Self.jobPrefix + d),
                                                "job-id": .string(Self.jobPrefix + d), "auto-dismiss": .bool(false),
                                                "sync": .string("full"),
                                                // copy_file_range(2) where the file system has it: about twice
                                                // the throughput of read and write through QEMU's buffers
                                                "x-perf": .object(["use-copy-range": .bool(true)])]
                if let parent {
                    job["sync"] = .string("bitmap")
                    job["bitmap"] = .string(Self.bitmapPrefix + parent.id)
                    job["bitmap-mode"] = .string("never")
                }
                actions.append(.object(["type": .string("blockdev-backup"), "data": .object(job)]))
            }
            _ = try await qmp.execute("transaction", arguments: .object(["actions": .array(actions)]), timeout: 30)
            bitmapAdded = true
            let started = now()
            let verb = kind == .full ? "full backup" : "incremental backup"
            tasks.update(taskID) { $0.message = "\(verb) \(id) started" + (note.map { "; \($0)" } ?? "") }

            // progress until every job concluded (asked often at first: a
            // small incremental is over in a moment)
            var copied: Int64 = 0
            var total: Int64 = 0
            var pause = 0.01
            while true {
                let jobs = try await qmp.execute("query-jobs", timeout: 10).arrayValue ?? []
                let ours = jobs.filter { $0["id"]?.stringValue?.hasPrefix(Self.jobPrefix) == true }
                copied = ours.reduce(0) { $0 + ($1["current-progress"]?.int64Value ?? 0) }
                total = ours.reduce(0) { $0 + ($1["total-progress"]?.int64Value ?? 0) }
                if ours.count < diskIDs.count { throw VMError.conflict("a backup job of VM '\(name)' disappeared") }
                if ours.allSatisfy({ $0["status"]?.stringValue == "concluded" }) {
                    let errors = ours.compactMap { j in j["error"]?.stringValue.map { "\(j["id"]?.stringValue ?? ""): \($0)" } }
                    for j in ours { _ = try? await qmp.execute("job-dismiss", arguments: .object(["id": j["id"]!])) }
                    if !errors.isEmpty { throw VMError.conflict("the backup job failed: \(errors.joined(separator: "; "))") }
                    break
                }
                let secs = max(0.001, now() - started)
                let rate = Int64(Double(copied) / secs)
                tasks.update(taskID) { t in
                    if total > 0 { t.progress = Int(min(95, copied * 95 / total)) }
                    t.message = "\(verb) \(id): \(Sizes.human(copied)) of \(Sizes.human(total)) at \(Sizes.human(rate))/s"
                        + (note.map { "; \($0)" } ?? "")
                }
                await sleep(seconds: pause)
                pause = min(0.05, pause * 1.5)
            }
            let elapsed = max(0.001, now() - started)
            // closing the target nodes writes QEMU's qcow2 metadata to the files
            for n in targetsAdded { _ = try? await qmp.execute("blockdev-del", arguments: .object(["node-name": .string(n)]), timeout: 300) }
            targetsAdded = []
            let flushed = now()

            // checksums (each file synced to the disk meanwhile), then the record, then
            // the directory's rename: only now does the backup exist
            tasks.update(taskID) { $0.progress = 96; $0.message = "\(verb) \(id): checksums" }
            let hashes = try await Self.hashAndSync(diskIDs.map { "\(dir)/\($0).qcow2" })
            var disks: [BackupDisk] = []
            for (d, h) in zip(diskIDs, hashes) {
                let file = "\(dir)/\(d).qcow2"
                disks.append(BackupDisk(id: d, virtualSize: sizes[d]!, file: "\(d).qcow2", checksum: h, size: Files.size(file) ?? 0))
            }
            let hashed = now()
            let record = BackupRecord(id: id, vm: name, time: time, kind: kind, parent: parent?.id, spec: spec.json, disks: disks)
            try catalog.commit(record)
            // the bitmaps of earlier backups are of no more use
            let remaining = try await Self.bitmaps(qmp)
            for d in diskIDs {
                for b in remaining[d] ?? [] {
                    guard let bn = b["name"]?.stringValue, bn.hasPrefix(Self.bitmapPrefix), bn != Self.bitmapPrefix + id else { continue }
                    _ = try? await qmp.execute("block-dirty-bitmap-remove", arguments: .object(["node": .string("disk-\(d)"), "name": .string(bn)]))
                }
            }
            await closeDisks(h, name)
            holder = nil
            let pruned = applyRetention(name)
            let rate = Int64(Double(copied) / elapsed)
            var msg = "\(verb) \(id) of '\(name)': \(Sizes.human(copied)) copied in \(String(format1(elapsed))) s (\(Sizes.human(rate))/s), \(Sizes.human(record.size)) on the target"
            if let note { msg += "; \(note)" }
            if !pruned.isEmpty { msg += "; retention removed \(pruned.joined(separator: ", "))" }
            guard case .object(var result) = record.summary else { return }
            result["bytes_copied"] = .int64(copied)
            result["seconds"] = .number(elapsed)
            // where the time went: preparing, copying, flushing, hashing, in all
            result["phases"] = .object(["prepare": .number(started - begun), "copy": .number(elapsed),
                                        "flush": .number(flushed - started - elapsed), "checksum": .number(hashed - flushed),
                                        "total": .number(now() - begun)])
            result["bytes_per_second"] = .int64(rate)
            result["note"] = note.map { .string($0) } ?? .null
            tasks.succeed(taskID, msg, result: .object(result))
            Log.info("VM \(name): \(msg)")
        } catch {
            if let h = holder {
                let qmp = h.qmp
                await Self.clearLeftovers(qmp)
                for n in targetsAdded { _ = try? await qmp.execute("blockdev-del", arguments: .object(["node-name": .string(n)])) }
                if bitmapAdded {
                    for d in diskIDs {
                        _ = try? await qmp.execute("block-dirty-bitmap-remove", arguments: .object([
                            "node": .string("disk-\(d)"), "name": .string(Self.bitmapPrefix + id)]))
                    }
                }
                await closeDisks(h, name)
            }
            Files.removeTree(catalog.partialPath(id))
            tasks.fail(taskID, error)
            Log.error("VM \(name): backup failed: \(error)")
        }
    }

    /// The cluster size of a full backup's qcow2.
    static let fullBackupClusterSize = 1 << 20

    /// The checksum of each file, each file's data synced to the disk at the
    /// same time (the hash reads from the page cache while the disk writes):
    /// every file on a thread of its own, two at a time.
    static func hashAndSync(_ files: [String]) async throws -> [BackupChecksum] {
        var out = [BackupChecksum](repeating: BackupChecksum(.xxh128, ""), count: files.count)
        var next = 0
        while next < files.count {
            let batch = Array(next..<min(files.count, next + 2))
            try await withThrowingTaskGroup(of: (Int, BackupChecksum?).self) { g in
                for i in batch {
                    let file = files[i]
                    g.addTask { (i, try await blocking { try BackupChecksum.of(file) }) }
                    g.addTask { try await blocking { try syncFile(file) }; return (i, nil) }
                }
                for try await (i, h) in g { if let h { out[i] = h } }
            }
            next += batch.count
        }
        return out
    }

    // MARK: - retention

    /// Applies `keep` to the VM's backups; returns the ids removed.
    @discardableResult
    func applyRetention(_ name: String) -> [String] {
        let catalog = backups
        let all = catalog.all()
        let mine = all.values.filter { $0.vm == name }
        let kept = BackupChains.retained(mine, keep: options.backupKeep, all: all)
        // children before parents: each removal is of a backup nothing kept builds on
        var removed: [String] = []
        for r in mine.sorted(by: { ($0.time, $0.id) > ($1.time, $1.id) }) where !kept.contains(r.id) {
            guard BackupChains.children(r.id, in: all).allSatisfy({ removed.contains($0.id) }) else { continue }
            catalog.remove(r.id)
            removed.append(r.id)
        }
        if !removed.isEmpty { Log.info("VM \(name): retention removed backups \(removed.joined(separator: ", "))") }
        return removed
    }

    // MARK: - verify

    /// `POST /api/v1/backups/{id}/verify`: recomputes the checksums of every
    /// file of the backup's chain.
    public func startVerify(_ id: String) throws -> TaskInfo {
        let r = try backup(id)
        let catalog = backups
        let task = tasks.begin("verify", on: id)
        Task.detached { [tasks] in
            tasks.update(task.id) { $0.state = .running; $0.message = "verifying \(id)" }
            let all = catalog.all()
            guard let chain = BackupChains.chain(r.id, in: all) else {
                tasks.update(task.id) { $0.state = .failed; $0.message = "backup \(id): a backup of its chain is missing" }
                return
            }
            let files = chain.flatMap { b in b.disks.map { (b, $0) } }
            var problems: [JSONValue] = []
            for (i, (b, d)) in files.enumerated() {
                let path = "\(catalog.path(b.id))/\(d.file)"
                let got = try? await blocking { try BackupChecksum.of(path, d.checksum.algorithm) }
                if got != d.checksum {
                    problems.append(.object(["backup": .string(b.id), "file": .string("\(b.id)/\(d.file)"),
                                             "algorithm": .string(d.checksum.algorithm.rawValue),
                                             "expected": .string(d.checksum.value), "actual": got.map { .string($0.value) } ?? .null]))
                }
                tasks.update(task.id) { $0.progress = (i + 1) * 99 / max(1, files.count) }
            }
            let result: JSONValue = .object(["ok": .bool(problems.isEmpty), "backup": .string(id), "files": .int(files.count),
                                             "mismatch": .array(problems)])
            if problems.isEmpty {
                tasks.succeed(task.id, "backup \(id): all \(files.count) file(s) of its chain match their checksums", result: result)
            } else {
                let names = problems.compactMap { $0["file"]?.stringValue }.joined(separator: ", ")
                tasks.update(task.id) {
                    $0.state = .failed; $0.progress = 100
                    $0.message = "backup \(id): checksum mismatch: \(names)"
                    $0.resultJSON = result.serialized()
                }
            }
        }
        return task
    }

    // MARK: - delete

    /// `DELETE /api/v1/backups/{id}`: a backup nothing builds on goes; an
    /// incremental others build on is merged into them first (`qemu-img
    /// rebase` onto its parent copies its blocks into each child); a full
    /// backup others build on is refused (409).
    public func deleteBackup(_ id: String) async throws {
        let r = try backup(id)
        guard !tasks.running(r.vm, kind: "backup") else { throw VMError.conflict("VM '\(r.vm)' is being backed up; try again after") }
        let catalog = backups
        let all = catalog.all()
        switch BackupChains.deletePlan(id, in: all) {
        case .refused(let why):
            throw VMError.conflict(why)
        case .remove:
            catalog.remove(id)
        case .mergeInto(let children, let newParent):
            for c in children {
                guard var child = all[c] else { continue }
                for i in child.disks.indices {
                    let file = "\(catalog.path(c))/\(child.disks[i].file)"
                    try await runTool(["qemu-img", "rebase", "-q", "-f", "qcow2", "-F", "qcow2",
                                       "-b", "../\(newParent)/\(child.disks[i].id).qcow2", file])
                    // (a rebased file gets the checksum new backups have)
                    child.disks[i].checksum = try await blocking { try BackupChecksum.of(file) }
                    child.disks[i].size = Files.size(file) ?? child.disks[i].size
                }
                child.parent = newParent
                try catalog.rewrite(child)
            }
            catalog.remove(id)
        }
        Log.info("backup \(id) of VM \(r.vm) deleted")
    }

    // MARK: - restore

    /// `POST /api/v1/backups/{id}/restore`: a new VM as of the backup. The
    /// body's keys override the backed-up definition (`name` required;
    /// `disks` come from the backup); each disk is `qemu-img convert`ed from
    /// the chain's top file into a standalone qcow2. A new name gives new
    /// MACs and a new cloud-init instance.
    public func startRestore(_ id: String, overrides: [String: JSONValue]) throws -> TaskInfo {
        let r = try backup(id)
        guard let name = overrides["name"]?.stringValue else { throw VMError.badRequest("'name' (the new VM's) is required") }
        if let e = Names.checkVM(name) { throw VMError.badRequest(e) }
        guard overrides["disks"] == nil else { throw VMError.badRequest("'disks' come from the backup and cannot be overridden") }
        guard BackupChains.chain(id, in: backups.all()) != nil else { throw VMError.conflict("backup \(id): a backup of its chain is missing") }
        guard case .object(var o) = r.spec else { throw VMError.invalid("backup \(id) holds no VM definition") }
        for (k, v) in overrides { o[k] = v }
        o["disks"] = .array(r.disks.map { .object(["id": .string($0.id), "size": .string(Sizes.format($0.virtualSize))]) })
        let spec = try VMSpec.decode(json: JSONValue.object(o).bytes, file: "body")
        _ = try create(spec, requireImages: false)
        busy.insert(name)
        let catalog = backups
        let p = paths(name)
        let task = tasks.begin("restore", on: name)
        Task {
            tasks.update(task.id) { $0.state = .running; $0.message = "restoring \(id) as '\(name)'" }
            do {
                try Files.makeDirectories(p.diskDir)
                try Files.writeAtomically(self.restoreMarker(name), "\(id)\n")
                let total = r.disks.reduce(Int64(0)) { $0 + $1.virtualSize }
                var done: Int64 = 0
                let started = now()
                for d in r.disks {
                    let target = p.disk(d.id)
                    let tmp = "\(p.diskDir)/.\(d.id).restore"
                    try await runTool(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2", "\(catalog.path(r.id))/\(d.file)", tmp])
                    try syscall("rename \(tmp)") { rename(tmp, target) }
                    done += d.virtualSize
                    tasks.update(task.id) { $0.progress = Int(min(99, done * 100 / max(1, total))) }
                }
                Files.remove(self.restoreMarker(name))
                self.release(name)
                let secs = now() - started
                tasks.succeed(task.id, "VM '\(name)' restored from backup \(id) (\(r.disks.count) disk(s) in \(format1(secs)) s)",
                              result: .object(["name": .string(name), "backup": .string(id)]))
                Log.info("VM \(name) restored from backup \(id)")
            } catch {
                self.release(name)
                try? self.delete(name)
                tasks.fail(task.id, error)
            }
        }
        return task
    }
}

/// One decimal.
func format1(_ v: Double) -> String {
    let t = Int((v * 10).rounded())
    return "\(t / 10).\(abs(t % 10))"
}

// MARK: - schedule

extension VMManager {
    /// How often (5 s apart) a scheduled backup refused with a conflict is tried again.
    static let scheduleRetries = 120

    /// The daily run (`backups.schedule`, UTC): once a day at `hour:minute`,
    /// an `auto` backup of every VM with `backup: true`. The day of the last
    /// run is kept on the target, so a daemon started after the hour (a
    /// machine that was off) runs the day's backups at once.
    public func runBackupSchedule(hour: Int, minute: Int) async {
        let stamp = "\(backupDirectory)/.last-scheduled"
        while !Task.isCancelled {
            let wall = Clock.wall()
            let c = CivilTime(wall)
            let today = String(BackupRecord.timestamp(wall).prefix(10))
            if (c.hour, c.minute) >= (hour, minute), Files.readTrimmed(stamp) != today {
                if (try? checkBackupTarget()) != nil {
                    try? Files.writeAtomically(stamp, today + "\n")
                }
                for name in specs.keys.sorted() where specs[name]?.backup == true {
                    // a VM starting, busy or being backed up is tried again for a while
                    // (the day's run is not lost to a moment's conflict)
                    var tries = 0
                    while !Task.isCancelled, specs[name]?.backup == true {
                        do {
                            let t = try startBackup(name, mode: .auto)
                            Log.info("scheduled backup of VM \(name): task \(t.id)")
                            // one at a time: wait for it to end
                            while let s = tasks.task(t.id)?.state, s == .pending || s == .running { await sleep(seconds: 2) }
                        } catch VMError.conflict(let why) where tries < Self.scheduleRetries {
                            tries += 1
                            if tries == 1 { Log.info("scheduled backup of VM \(name) waits: \(why)") }
                            await sleep(seconds: 5)
                            continue
                        } catch {
                            Log.error("scheduled backup of VM \(name) failed: \(error)")
                        }
                        break
                    }
                }
            }
            await sleep(seconds: 30)
        }
    }
}

/// A backup id that names no backup on the target.
public enum BackupError: DomainError, Sendable, Equatable {
    case notFound(id: String)

    public var kind: ErrorKind { .notFound }

    public var description: String {
        switch self {
        case .notFound(let id): "no backup '\(id)'"
        }
    }
}

/// Writes a file's data to the disk (fdatasync).
func syncFile(_ path: String) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemError("open \(path)", errno: errno) }
    defer { close(fd) }
    try syscall("fdatasync \(path)") { fdatasync(fd) }
}
