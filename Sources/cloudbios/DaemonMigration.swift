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
            do {
                let ready = try await ask("prepare", ["spec": spec.json])
                prepared = true
                guard let port = ready["port"]?.intValue else { throw RequestError.conflict("node '\(node)' named no migration port") }
                let result = try await manager.migrateOut(name, host: dest.address, port: port, nbdPort: ready["nbd_port"]?.intValue) { f, m in
                    tasks.update(task.id) { $0.progress = Int(f * 100); $0.message = m }
                }
                _ = try await ask("finish")
                // the destination runs the guest: it owns the VM from now on
                try await fleet.handOverAsync(name, to: node)
                await manager.migratedAway(name)
                let total = Clock.monotonic() - started
                tasks.succeed(task.id, "VM \(name) runs on \(node) (downtime \(result.downtimeMs) ms)", result: .object([
                    "node": .string(node), "downtime_ms": .int(result.downtimeMs), "ram_bytes": .int(Int(result.ramBytes)),
                    "disk_bytes": .int(Int(result.diskBytes)), "bytes": .int(Int(result.ramBytes + result.diskBytes)),
                    "migration_ms": .int(result.totalMs), "total_ms": .int(Int(total * 1000))]))
                Log.info("VM \(name): migrated live to \(node) in \(Int(total * 1000)) ms (downtime \(result.downtimeMs) ms)")
            } catch {
                if prepared { _ = try? await ask("abort") }
                Log.warning("VM \(name): migration to \(node) failed: \(error); it runs on here")
                tasks.fail(task.id, error)
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
        case "finish":
            return try await manager.finishIncoming(name).json
        case "abort":
            // only a VM that is not this node's own (the one being migrated in)
            if try await fleet.ownerAsync(name) != fleet.node { await manager.abortIncoming(name) }
            return .object([:])
        default:
            throw RequestError.badRequest("'step' must be prepare, finish or abort")
        }
    }
}
