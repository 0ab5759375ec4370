import Config
import Fleet
import Panel
import Platform
import VMManager

/// A live migration between two nodes of the fleet, run by the source (the
/// VM's owner) as a task: the destination prepares the same VM waiting for
/// it (`POST /api/v1/vms/{name}/incoming` `prepare` over the node API), the
/// source's QEMU mirrors the disks and migrates RAM into it, the
/// destination runs the guest (`finish`), and only then the VM's owner
/// becomes the destination in one etcd transaction and the source's QEMU
/// quits. Any failure before that cancels the migration (the guest runs
/// on here) and has the destination throw its copy away (`abort`).
extension VMManagerBackend {
    func migrate(_ name: String, to node: String) async throws -> TaskInfo {
        guard let fleet else { throw FleetError.notInFleet }
        if node == fleet.node { throw RequestError.conflict("VM '\(name)' is on node '\(node)' already") }
        guard let dest = try await fleet.nodesAsync().first(where: { $0.name == node }) else { throw FleetError.noSuchNode(node) }
        guard dest.state == "up" else { throw RequestError(.unavailable, "node '\(node)' is down: VM '\(name)' stays where it is") }
        let status = try await manager.vm(name)
        guard status.state == .running else { throw RequestError.conflict("VM '\(name)' is \(status.state.rawValue); only a running VM migrates live") }
        if manager.tasks.running(name, kind: "migrate") { throw RequestError.conflict("VM '\(name)' is migrating already") }
        let spec = try await manager.spec(name)
        let tasks = manager.tasks
        let task = tasks.begin("migrate", on: name, scope: fleet.node)
        let manager = self.manager
        Task {
            tasks.update(task.id) { $0.state = .running; $0.message = "preparing \(node)" }
            let started = Clock.monotonic()
            func ask(_ step: String, _ extra: [String: JSONValue] = [:]) async throws -> JSONValue {
                var body = extra
                body["step"] = .string(step)
                let a = try await fleet.sendAsync(to: node, address: dest.address, method: "POST", target: "/api/v1/vms/\(name)/incoming",
                                                  contentType: "application/json", body: JSONValue.object(body).bytes, user: "fleet:" + fleet.node)
                let v = try? JSONValue.parse(a.body)
                guard a.status == 200, let v else {
                    throw RequestError.conflict("node '\(node)': \(step): \(v?["error"]?.stringValue ?? "HTTP \(a.status)")")
                }
                return v
            }
            var prepared = false
            var switched = false
            // the images this migration copied there: removed again when it fails
            var copied: [String] = []
            do {
                try await copyImages(name, to: node, address: dest.address, copied: &copied) { m in tasks.update(task.id) { $0.message = m } }
                tasks.update(task.id) { $0.message = "preparing \(node)" }
                let ready = try await ask("prepare", ["spec": spec.json])
                prepared = true
                guard let port = ready["port"]?.intValue else { throw RequestError.conflict("node '\(node)' named no migration port") }
                let result = try await manager.migrateOut(name, host: dest.address, port: port, nbdPort: ready["nbd_port"]?.intValue) { f, m in
                    tasks.update(task.id) { $0.progress = Int(f * 100); $0.message = m }
                }
                // past the switch-over: the guest is paused here, its state on the destination
                switched = true
                _ = try await ask("finish")
                // the destination runs the guest: it owns the VM from now on
                do {
                    try await fleet.handOverAsync(name, to: node)
                } catch {
                    // an answer lost after etcd applied it is a handover all the same
                    guard (try? await fleet.ownerAsync(name)) == node else { throw error }
                }
                switched = false
                // the migration's time: until the VM runs on, and belongs to, the destination (the cleanup here follows)
                let total = Clock.monotonic() - started
                await manager.migratedAway(name)
                tasks.succeed(task.id, "VM \(name) runs on \(node) (downtime \(result.downtimeMs) ms)", result: .object([
                    "node": .string(node), "downtime_ms": .int(result.downtimeMs), "ram_bytes": .int(Int(result.ramBytes)),
                    "disk_bytes": .int(Int(result.diskBytes)), "bytes": .int(Int(result.ramBytes + result.diskBytes)),
                    "migration_ms": .int(result.totalMs), "total_ms": .int(Int(total * 1000)),
                    "images_copied": .array(copied.map { .string($0) })]))
                Log.info("VM \(name): migrated live to \(node) in \(Int(total * 1000)) ms (downtime \(result.downtimeMs) ms)")
            } catch {
                guard switched else {
                    if prepared { _ = try? await ask("abort") }
                    await dropCopies(copied, on: node, address: dest.address)
                    Log.warning("VM \(name): migration to \(node) failed: \(error); it runs on here")
                    tasks.fail(task.id, error)
                    return
                }
                // after the switch-over: the destination's copy goes first, then the guest runs on here again
                // from where it paused (what the destination ran meanwhile is dropped with its copy)
                do {
                    _ = try await ask("abort")
                } catch let abort {
                    Log.error("VM \(name): migration to \(node) failed after the switch-over (\(error)), and \(node) did not drop its copy (\(abort)); left paused here")
                    tasks.fail(task.id, RequestError.conflict("\(error); node '\(node)' did not drop its copy (\(abort)), so VM '\(name)' stays paused here"))
                    return
                }
                await dropCopies(copied, on: node, address: dest.address)
                let resumed = await manager.resumeAfterMigration(name)
                Log.warning("VM \(name): migration to \(node) failed after the switch-over: \(error); " + (resumed ? "rolled back, it runs on here" : "it could not be resumed here"))
                tasks.fail(task.id, RequestError.conflict("\(error); rolled back: " + (resumed ? "VM '\(name)' runs on here again" : "VM '\(name)' could not be resumed here")))
            }
        }
        return task
    }

    func incoming(_ name: String, _ body: JSONValue) async throws -> JSONValue {
        guard let fleet else { throw FleetError.notInFleet }
        switch body["step"]?.stringValue {
        case "prepare":
            guard let s = body["spec"] else { throw RequestError.badRequest("'spec' is missing") }
            let spec = try VMSpec.decode(json: s.bytes, file: "spec", name: name)
            let ports = try await manager.prepareIncoming(spec, address: fleet.address)
            var out: [String: JSONValue] = ["port": .int(ports.port)]
            if let n = ports.nbdPort { out["nbd_port"] = .int(n) }
            return .object(out)
        case "images":
            // which of the source's images (name → SHA-256) this node lacks
            guard case .object(let o)? = body["images"] else { throw RequestError.badRequest("'images' must be an object of image names to SHA-256") }
            var wanted: [String: String] = [:]
            for (k, v) in o {
                guard let h = v.stringValue, Names.checkSHA256(h) == nil else { throw RequestError.badRequest("'images.\(Names.clip(k))' must be a SHA-256") }
                wanted[k] = h
            }
            return .object(["lacking": .array(try await manager.lackingImages(wanted).map { .string($0) })])
        case "finish":
            return try await manager.finishIncoming(name).json
        case "abort":
            // only a VM that is not this node's own (the one being migrated in)
            if try await fleet.ownerAsync(name) != fleet.node { await manager.abortIncoming(name) }
            return .object([:])
        default:
            throw RequestError.badRequest("'step' must be images, prepare, finish or abort")
        }
    }

    /// Copies the store images VM `name` needs that node `node` lacks
    /// (asked with step `images`), each streamed from this store's file as
    /// an upload there; the names copied. An image the node holds with
    /// other bytes under the same name is refused before anything moves.
    func copyImages(_ name: String, to node: String, address: String, copied: inout [String],
                    say: @escaping @Sendable (String) -> Void) async throws {
        guard let fleet else { throw FleetError.notInFleet }
        let needed = try await manager.neededImages(name)
        guard !needed.isEmpty else { return }
        let body = JSONValue.object(["step": .string("images"),
                                     "images": .object(Dictionary(uniqueKeysWithValues: needed.map { ($0.name, JSONValue.string($0.sha256)) }))])
        let a = try await fleet.sendAsync(to: node, address: address, method: "POST", target: "/api/v1/vms/\(name)/incoming",
                                          contentType: "application/json", body: body.bytes, user: "fleet:" + fleet.node)
        let v = try? JSONValue.parse(a.body)
        guard a.status == 200, let lacking = v?["lacking"]?.arrayValue?.compactMap(\.stringValue) else {
            throw RequestError.conflict("node '\(node)': images: \(v?["error"]?.stringValue ?? "HTTP \(a.status)")")
        }
        for img in needed where lacking.contains(img.name) {
            say("copying image '\(img.name)' (\(Sizes.human(img.size))) to \(node)")
            // (one cut short in its upload is removed too; the destination never had it)
            copied.append(img.name)
            let r = try await fleet.sendFileAsync(to: node, address: address, target: "/api/v1/images/\(img.name)", path: img.path,
                                                  size: img.size, user: "fleet:" + fleet.node)
            let got = try? JSONValue.parse(r.body)
            guard r.status == 201 || r.status == 200 else {
                throw RequestError.conflict("node '\(node)': copying image '\(img.name)': \(got?["error"]?.stringValue ?? "HTTP \(r.status)")")
            }
            if let h = got?["sha256"]?.stringValue, h != img.sha256 {
                throw RequestError.conflict("node '\(node)': image '\(img.name)' arrived with SHA-256 \(h.prefix(12))…, not \(img.sha256.prefix(12))…")
            }
            Log.info("VM \(name): image '\(img.name)' copied to \(node) for its migration")
        }
    }

    /// Removes from `node` the images a failed migration copied there
    /// (only those: the destination lacked them before).
    func dropCopies(_ images: [String], on node: String, address: String) async {
        guard let fleet else { return }
        for img in images {
            let r = try? await fleet.sendAsync(to: node, address: address, method: "DELETE", target: "/api/v1/images/\(img)",
                                               contentType: nil, body: [], user: "fleet:" + fleet.node)
            if let r, r.status == 204 || r.status == 200 || r.status == 404 {
                Log.info("image '\(img)' copied to \(node) for a failed migration removed there")
            } else {
                Log.warning("image '\(img)' copied to \(node) for a failed migration could not be removed there (HTTP \(r?.status ?? 0))")
            }
        }
    }
}
