#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU

/// Why a snapshot operation is refused, beyond the VM's own errors.
public enum SnapshotError: DomainError, Sendable, Equatable {
    /// The VM has no snapshot of this name.
    case notFound(vm: String, snapshot: String)

    public var kind: ErrorKind { .notFound }
    public var description: String {
        switch self {
        case .notFound(let vm, let s): "VM '\(vm)' has no snapshot named '\(Names.clip(s))'"
        }
    }
}

/// Snapshots of a VM's writable qcow2 disks (never the cloud-init seed or
/// the CD), kept inside the disk files (qcow2 internal snapshots):
///
/// - running, `memory: true`: QMP `snapshot-save` with the RAM on the first
///   disk; a revert (`snapshot-load`) resumes the guest where it was;
/// - running, disks only: a `transaction` of `blockdev-snapshot-internal-sync`,
///   between the guest agent's `guest-fsfreeze-freeze` and `…-thaw` when an
///   agent answers (quiesced), crash-consistent otherwise;
/// - stopped: `qemu-img snapshot -c/-a/-d`.
///
/// Taking and reverting are tasks (`snapshot`, `revert`); deleting answers
/// when done. While one runs the VM is busy: it cannot start, stop, change
/// or be deleted. The tree (`SnapshotTree`) lives in `snapshots.json` beside
/// the disks and goes with them.
extension VMManager {
    nonisolated func snapshotFile(_ name: String) -> String { "\(paths(name).diskDir)/snapshots.json" }

    func loadSnapshots(_ name: String) -> SnapshotTree {
        guard let bytes = try? Files.read(snapshotFile(name)), let v = try? JSONValue.parse(bytes) else { return SnapshotTree() }
        return SnapshotTree(stored: v)
    }

    func saveSnapshots(_ name: String, _ tree: SnapshotTree) throws(VMError) {
        do {
            try Files.makeDirectories(paths(name).diskDir)
            try Files.writeAtomically(snapshotFile(name), tree.stored.serialized(pretty: true) + "\n")
        } catch {
            throw .cannotSave(name: name, reason: "snapshot list: \(error)")
        }
    }

    /// `GET /api/v1/vms/{name}/snapshots`.
    public func snapshots(_ name: String) throws(VMError) -> SnapshotTree {
        guard specs[name] != nil else { throw .notFound(name: name) }
        return loadSnapshots(name)
    }

    /// `POST /api/v1/vms/{name}/snapshots`: checks what can be checked now
    /// (409/422 at once), then takes the snapshot as a task.
    public func startSnapshot(_ name: String, snapshot: String, memory: Bool) async throws -> TaskInfo {
        if let e = Names.checkSnapshot(snapshot) { throw VMError.badRequest(e) }
        let spec = try claimForSnapshot(name)
        var released = false
        defer { if !released { busy.remove(name) } }
        guard loadSnapshots(name).record(snapshot) == nil else {
            throw VMError.conflict("VM '\(name)' has a snapshot named '\(snapshot)' already")
        }
        let running = runtimes[name]
        if memory, running == nil {
            throw VMError.conflict("VM '\(name)' is stopped: a snapshot with memory needs it running; take one of its disks (memory: false)")
        }
        let disks = try await snapshotDisks(name, running?.live ?? spec)
        let task = tasks.begin("snapshot", on: name)
        released = true
        Task {
            defer { Task { await self.releaseSnapshotClaim(name) } }
            self.tasks.update(task.id) { $0.state = .running; $0.message = "taking snapshot '\(snapshot)'" }
            do {
                let r = try await self.takeSnapshot(name, snapshot, memory: memory, disks: disks, spec: spec)
                self.tasks.succeed(task.id, "snapshot '\(snapshot)' of VM '\(name)' taken (\(r.consistency.rawValue))", result: r.json)
                Log.info("VM \(name): snapshot \(snapshot) taken (\(r.consistency.rawValue))")
            } catch {
                self.tasks.fail(task.id, error)
                Log.error("VM \(name): snapshot \(snapshot) failed: \(error)")
            }
        }
        return task
    }

    /// `POST /api/v1/vms/{name}/snapshots/{snap}/revert`, as a task:
    /// - with memory, running or paused: the saved state is loaded, and
    ///   the guest goes on from where it was (paused stays paused);
    /// - with memory, stopped: the VM starts from that state (its CPUs held
    ///   until the state is in), running as it was then;
    /// - disks only, stopped: the disks go back;
    /// - disks only, running: the VM is powered off, its disks go back and
    ///   it starts again from them (a boot, as after a power cut).
    public func startRevert(_ name: String, snapshot: String) async throws -> TaskInfo {
        if let e = Names.checkSnapshot(snapshot) { throw VMError.badRequest(e) }
        let spec = try claimForSnapshot(name)
        var released = false
        defer { if !released { busy.remove(name) } }
        guard let rec = loadSnapshots(name).record(snapshot) else { throw SnapshotError.notFound(vm: name, snapshot: snapshot) }
        let live = runtimes[name]?.live ?? spec
        if rec.memory, let then = rec.spec, let change = SnapshotTree.hardwareChange(from: then, to: live) {
            throw VMError.conflict("VM '\(name)' changed since snapshot '\(snapshot)' (\(change)); its memory only loads into the same hardware")
        }
        if rec.memory, runtimes[name] == nil, spec.template {
            throw VMError.conflict(Self.templateStartMessage(name) + "; snapshot '\(snapshot)' holds memory and a revert would start it")
        }
        let missing = rec.disks.filter { id in !live.disks.contains { $0.id == id } }
        if !missing.isEmpty {
            throw VMError.conflict("VM '\(name)' no longer has the disk(s) \(missing.joined(separator: ", ")) of snapshot '\(snapshot)'")
        }
        let task = tasks.begin("revert", on: name)
        released = true
        Task {
            defer { Task { await self.releaseSnapshotClaim(name) } }
            self.tasks.update(task.id) { $0.state = .running; $0.message = "reverting to snapshot '\(snapshot)'" }
            do {
                let how = try await self.revertSnapshot(name, rec)
                self.tasks.succeed(task.id, "VM '\(name)' reverted to snapshot '\(snapshot)': \(how)", result: try self.vm(name).json)
                Log.info("VM \(name): reverted to snapshot \(snapshot) (\(how))")
            } catch {
                self.tasks.fail(task.id, error)
                Log.error("VM \(name): revert to snapshot \(snapshot) failed: \(error)")
            }
        }
        return task
    }

    /// `DELETE /api/v1/vms/{name}/snapshots/{snap}`: the snapshot leaves
    /// every disk (its children hang from its parent now); answers the list.
    public func deleteSnapshot(_ name: String, snapshot: String) async throws -> SnapshotTree {
        if let e = Names.checkSnapshot(snapshot) { throw VMError.badRequest(e) }
        _ = try claimForSnapshot(name)
        defer { busy.remove(name) }
        var tree = loadSnapshots(name)
        guard let rec = tree.record(snapshot) else { throw SnapshotError.notFound(vm: name, snapshot: snapshot) }
        let p = paths(name)
        let present = rec.disks.filter { Files.exists(p.disk($0)) }
        if let rt = runtimes[name] {
            guard let qmp = rt.qmp else { throw VMError.conflict("VM '\(name)' is busy; try again") }
            let nodes = try await nodeNames(name, qmp, present)
            if !nodes.isEmpty {
                try await runJob(qmp, "snapshot-delete", ["tag": .string(snapshot), "devices": .array(nodes.map { .string($0) })],
                                 timeout: 600)
            }
        } else {
            for id in present where try await diskSnapshots(p.disk(id)).contains(snapshot) {
                try await runTool(["qemu-img", "snapshot", "-q", "-d", snapshot, p.disk(id)])
            }
        }
        tree.remove(snapshot)
        try saveSnapshots(name, tree)
        Log.info("VM \(name): snapshot \(snapshot) deleted")
        return tree
    }

    // MARK: - the work

    /// Marks the VM busy for a snapshot operation, or says why it cannot be.
    private func claimForSnapshot(_ name: String) throws(VMError) -> VMSpec {
        guard let spec = specs[name] else { throw .notFound(name: name) }
        guard !busy.contains(name), runtimes[name]?.state != .starting else {
            throw .conflict("VM '\(name)' is busy (starting, or another snapshot operation); try again")
        }
        if let rt = runtimes[name], rt.qmp == nil { throw .conflict("VM '\(name)' runs but its QMP socket does not answer") }
        try checkNoLinkedClones(name, "change its snapshots")
        busy.insert(name)
        return spec
    }

    private func releaseSnapshotClaim(_ name: String) { busy.remove(name) }

    /// The VM's disks a snapshot covers: every disk of the spec, each a
    /// qcow2 file (422 for another format; 409 when there is none or the
    /// VM was never started).
    private func snapshotDisks(_ name: String, _ spec: VMSpec) async throws -> [String] {
        guard !spec.disks.isEmpty else { throw VMError.conflict("VM '\(name)' has no disk to snapshot") }
        let p = paths(name)
        var ids: [String] = []
        for d in spec.disks {
            guard let id = d.id else { continue }
            guard Files.exists(p.disk(id)) else {
                throw VMError.conflict("VM '\(name)': disk '\(id)' does not exist yet (it is made at the VM's first start)")
            }
            let info = try await DiskImage.info(p.disk(id))
            guard info.format == "qcow2" else {
                throw VMError.invalid("VM '\(name)': disk '\(id)' is \(info.format); snapshots need qcow2 disks (convert it with qemu-img convert -O qcow2)")
            }
            ids.append(id)
        }
        return ids
    }

    private func takeSnapshot(_ name: String, _ snapshot: String, memory: Bool, disks: [String], spec: VMSpec) async throws -> SnapshotRecord {
        let p = paths(name)
        var rec = SnapshotRecord(name: snapshot, time: SnapshotTree.timestamp(Clock.wall()), consistency: .stopped, disks: disks,
                                 spec: runtimes[name]?.live ?? spec)
        if let rt = runtimes[name] {
            guard let qmp = rt.qmp else { throw VMError.conflict("VM '\(name)' is not reachable over QMP") }
            if memory {
                let nodes = try await nodeNames(name, qmp, disks)
                try await runJob(qmp, "snapshot-save", ["tag": .string(snapshot), "vmstate": .string(nodes[0]),
                                                        "devices": .array(nodes.map { .string($0) })], timeout: 1800)
                rec.consistency = .memory
                rec.vmstateDisk = disks[0]
            } else {
                let frozen = rt.state == .running && spec.agent ? await freeze(name) : false
                do {
                    let actions: [JSONValue] = disks.map {
                        .object(["type": .string("blockdev-snapshot-internal-sync"),
                                 "data": .object(["device": .string("disk-\($0)"), "name": .string(snapshot)])])
                    }
                    try await qmp.execute("transaction", arguments: .object(["actions": .array(actions)]), timeout: 300)
                } catch {
                    if frozen { await thaw(name) }
                    throw VMError.conflict("VM '\(name)': the disks' snapshot failed: \(error)")
                }
                if frozen { await thaw(name) }
                rec.consistency = frozen ? .quiesced : .crashConsistent
            }
        } else {
            var done: [String] = []
            do {
                for id in disks {
                    try await runTool(["qemu-img", "snapshot", "-q", "-c", snapshot, p.disk(id)])
                    done.append(id)
                }
            } catch {
                for id in done { try? await runTool(["qemu-img", "snapshot", "-q", "-d", snapshot, p.disk(id)]) }
                throw error
            }
        }
        var tree = loadSnapshots(name)
        tree.add(rec)
        try saveSnapshots(name, tree)
        return tree.record(snapshot) ?? rec
    }

    private func revertSnapshot(_ name: String, _ rec: SnapshotRecord) async throws -> String {
        let p = paths(name)
        var how: String
        if rec.memory {
            let startedHere = runtimes[name] == nil
            if startedHere {
                // held at its first instruction until the saved state is in
                busy.remove(name)
                do {
                    _ = try await start(name, paused: true)
                } catch {
                    busy.insert(name)
                    throw error
                }
                busy.insert(name)
            }
            guard let qmp = runtimes[name]?.qmp else { throw VMError.conflict("VM '\(name)' is not reachable over QMP") }
            do {
                let nodes = try await nodeNames(name, qmp, rec.disks)
                let vmstate = try await nodeNames(name, qmp, [rec.vmstateDisk ?? rec.disks[0]])[0]
                try await runJob(qmp, "snapshot-load", ["tag": .string(rec.name), "vmstate": .string(vmstate),
                                                        "devices": .array(nodes.map { .string($0) })], timeout: 1800)
                if startedHere { try await qmp.execute("cont", timeout: 10) }
            } catch {
                if startedHere { _ = try? await stop(name) }
                throw error
            }
            await refreshState(name)
            how = startedHere ? "started from its saved state" : "its saved state loaded"
        } else {
            let wasRunning = runtimes[name] != nil
            if wasRunning { _ = try await stop(name) }
            for id in rec.disks { try await runTool(["qemu-img", "snapshot", "-q", "-a", rec.name, p.disk(id)]) }
            how = "disks reverted"
            if wasRunning {
                busy.remove(name)
                defer { busy.insert(name) }
                _ = try await start(name)
                how += "; started again"
            }
        }
        var tree = loadSnapshots(name)
        tree.revert(to: rec.name)
        try saveSnapshots(name, tree)
        return how
    }

    /// The block node names of the VM's disks `ids` (`snapshot-save` and
    /// its kin name nodes, not drives).
    private func nodeNames(_ name: String, _ qmp: QMPClient, _ ids: [String]) async throws -> [String] {
        let blocks = try await qmp.execute("query-block", timeout: 10).arrayValue ?? []
        return try ids.map { id in
            guard let b = blocks.first(where: { $0["device"]?.stringValue == "disk-\(id)" }),
                  let node = b["inserted"]?["node-name"]?.stringValue else {
                throw VMError.conflict("VM '\(name)': disk '\(id)' is not attached now")
            }
            return node
        }
    }

    /// Runs a QMP job to its end (`query-jobs` until concluded), dismisses
    /// it, and throws its error.
    private func runJob(_ qmp: QMPClient, _ command: String, _ args: [String: JSONValue], timeout: Double) async throws {
        let id = "cb-\(command)-\(Int(Clock.monotonic() * 1000))"
        var a = args
        a["job-id"] = .string(id)
        do {
            try await qmp.execute(command, arguments: .object(a), timeout: 10)
        } catch let e as QMPError {
            throw VMError.conflict("\(command): \(e.desc)")
        }
        let deadline = now() + timeout
        while true {
            let jobs = try await qmp.execute("query-jobs", timeout: 10).arrayValue ?? []
            guard let job = jobs.first(where: { $0["id"]?.stringValue == id }) else {
                throw VMError.conflict("\(command): the job vanished")
            }
            if job["status"]?.stringValue == "concluded" {
                _ = try? await qmp.execute("job-dismiss", arguments: .object(["id": .string(id)]), timeout: 10)
                if let e = job["error"]?.stringValue { throw VMError.conflict("\(command): \(e)") }
                return
            }
            if now() > deadline {
                _ = try? await qmp.execute("job-cancel", arguments: .object(["id": .string(id)]), timeout: 10)
                throw VMError.conflict("\(command) did not finish within \(Int(timeout)) s")
            }
            await sleep(seconds: 0.1)
        }
    }

    /// Freezes the guest's filesystems through its agent: whether they are
    /// frozen (nil answer: no agent, or it could not).
    private func freeze(_ name: String) async -> Bool {
        let socket = paths(name).agentSocket
        guard (try? await blocking({ GuestAgent.execute(socket: socket, "guest-ping", timeout: 3) })) ?? nil != nil else { return false }
        let r = (try? await blocking({ GuestAgent.execute(socket: socket, "guest-fsfreeze-freeze", timeout: 60) })) ?? nil
        if r?.intValue == nil {
            // a freeze may have happened whose answer was lost
            await thaw(name)
            return false
        }
        return true
    }

    /// Thaws the guest's filesystems; asked again until the agent says they
    /// are thawed (a guest left frozen hangs its writers).
    private func thaw(_ name: String) async {
        let socket = paths(name).agentSocket
        for attempt in 0..<5 {
            if (try? await blocking({ GuestAgent.execute(socket: socket, "guest-fsfreeze-thaw", timeout: 10) })) ?? nil != nil { return }
            if let st = (try? await blocking({ GuestAgent.execute(socket: socket, "guest-fsfreeze-status", timeout: 5) })) ?? nil,
               st.stringValue == "thawed" { return }
            Log.warning("VM \(name): the guest agent did not thaw the filesystems yet (attempt \(attempt + 1))")
            await sleep(seconds: 1)
        }
        Log.error("VM \(name): the guest's filesystems may still be frozen; the guest agent does not answer")
    }

    /// The snapshot names inside a qcow2 file.
    func diskSnapshots(_ file: String) async throws -> [String] {
        guard let tool = Launcher.which("qemu-img") else { throw ManagerError.tool("qemu-img is not installed") }
        let launcher = Launcher(tool, ["info", "--force-share", "--output=json", file])
        let (status, output) = try await blocking { try launcher.run(mergeError: false) }
        guard status == 0, let v = try? JSONValue.parse(Array(output.utf8)) else { return [] }
        return (v["snapshots"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    }

    /// Why a VM that is running, starting or in a snapshot or clone cannot
    /// change now.
    func notIdleMessage(_ name: String) -> String {
        if runtimes[name] != nil { return "VM '\(name)' is running; stop it first" }
        if busy.contains(name) { return "VM '\(name)' is busy: a start, snapshot or clone of it is under way; try again once it is done" }
        return "VM '\(name)' is busy; try again"
    }

    static func templateStartMessage(_ name: String) -> String {
        "VM '\(name)' is a template; templates never start (clone it: POST /api/v1/vms/\(name)/clone)"
    }
}
