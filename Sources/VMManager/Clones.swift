#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU

/// How a clone's definition follows from its source's and the request's
/// overrides. Pure.
///
/// The clone is the source's spec with the body's keys laid over it (a
/// `cloud_init` object is merged key by key), then: `name` = NEW; a new
/// cloud-init instance (its id follows the name) whose hostname is NEW
/// unless the overrides give one; no port forwards (the source's host
/// ports are the source's), not the display, no autostart and not a
/// template, unless the overrides say so. Its disks are the source's, so
/// `disks` cannot be overridden. MACs follow the name, so they are new.
public enum CloneRecipe {
    /// Keys of the body that are not spec keys.
    public static let ownKeys: Set<String> = ["name", "linked"]

    public static func derive(source: VMSpec, body: [String: JSONValue]) throws -> (spec: VMSpec, linked: Bool) {
        guard let name = body["name"]?.stringValue else {
            throw VMError.badRequest("body must be {\"name\": NEW, \"linked\": true|false, …spec keys to override}")
        }
        if let e = Names.checkVM(name) { throw VMError.badRequest(e) }
        var linked = true
        if let l = body["linked"] {
            guard let b = l.boolValue else { throw VMError.badRequest("'linked' must be true or false") }
            linked = b
        }
        if body["disks"] != nil { throw VMError.invalid("a clone's disks are its source's; grow them after cloning (PUT)") }
        guard case .object(var o) = source.json else { throw VMError.invalid("the source cannot be read") }
        o["forwards"] = .array([])
        o["display"] = .bool(false)
        o["autostart"] = .bool(false)
        o["template"] = .bool(false)
        if case .object(var ci)? = o["cloud_init"] {
            ci["hostname"] = nil
            if case .object(let over)? = body["cloud_init"] { for (k, v) in over { ci[k] = v } }
            o["cloud_init"] = .object(ci)
        } else if let over = body["cloud_init"] {
            o["cloud_init"] = over
        }
        for (k, v) in body where !ownKeys.contains(k) && k != "cloud_init" { o[k] = v }
        o["name"] = .string(name)
        var spec = try VMSpec.decode(json: JSONValue.object(o).bytes, file: "body", name: name)
        spec.assignDiskIDs()
        return (spec, linked)
    }
}

/// Clones: `POST /api/v1/vms/{name}/clone` as a task. A linked clone's
/// disks are new qcow2 files over the source's (its backing files), so
/// they are made from templates only: a template never starts, so its
/// disks are never written while clones read them, and it cannot stop
/// being a template, change its snapshots or be deleted while linked
/// clones depend on it (409 naming them). A full clone is a `qemu-img
/// convert` copy of each disk, standing alone, from a stopped VM or a
/// template. The clone keeps the name of its source in
/// `STATE/disks/NEW/linked-to` while it is linked.
extension VMManager {
    nonisolated func linkFile(_ name: String) -> String { "\(paths(name).diskDir)/linked-to" }

    /// The VMs whose disks are linked clones of `name`'s.
    public func linkedClones(of name: String) -> [String] {
        specs.keys.filter { $0 != name && Files.readTrimmed(linkFile($0)) == name }.sorted()
    }

    func checkNoLinkedClones(_ name: String, _ what: String) throws(VMError) {
        let deps = linkedClones(of: name)
        guard deps.isEmpty else {
            throw .conflict("VM '\(name)' cannot \(what): the linked clone(s) \(deps.joined(separator: ", ")) depend on its disks")
        }
    }

    public func startClone(_ source: String, body: [String: JSONValue]) async throws -> TaskInfo {
        guard let src = specs[source] else { throw VMError.notFound(name: source) }
        let (spec, linked) = try CloneRecipe.derive(source: src, body: body)
        let name = spec.name
        guard specs[name] == nil else { throw VMError.exists(name: name) }
        guard !tasks.running(name, kind: "clone") else { throw VMError.exists(name: name) }
        try spec.validate()
        guard paths(name).qmpSocket.utf8.count < 108 else { throw VMError.invalid("VM name '\(name)' is too long for a socket path under \(stateDir)") }
        try checkClonePorts(spec)
        guard runtimes[source] == nil else { throw VMError.conflict("VM '\(source)' is running; clone it once it is stopped (or clone a template)") }
        guard !busy.contains(source) else { throw VMError.conflict(notIdleMessage(source)) }
        if linked, !src.template {
            throw VMError.conflict("linked clones are made from templates, whose disks never change: mark '\(source)' as a template (template: true), or make a full clone (linked: false)")
        }
        busy.insert(source)
        let task = tasks.begin("clone", on: name)
        Task {
            defer { Task { await self.release(source: source) } }
            self.tasks.update(task.id) { $0.state = .running; $0.message = "\(linked ? "linking" : "copying") the disks of '\(source)'" }
            do {
                let vm = try await self.makeClone(src, spec, linked: linked, task: task.id)
                self.tasks.succeed(task.id, "VM '\(name)' made as a \(linked ? "linked" : "full") clone of '\(source)'", result: vm.json)
                Log.info("VM \(name): \(linked ? "linked" : "full") clone of \(source) made")
            } catch {
                self.tasks.fail(task.id, error)
                Log.error("VM \(name): clone of \(source) failed: \(error)")
            }
        }
        return task
    }

    private func release(source: String) { busy.remove(source) }

    /// 409 when a host port the clone forwards is the panel's or another VM's.
    private func checkClonePorts(_ spec: VMSpec) throws(VMError) {
        for f in spec.forwards {
            if let owner = options.reservedPorts["\(f.proto.rawValue)/\(f.host)"] {
                throw .conflict("host port \(f.proto.rawValue) \(f.host) is taken by \(owner)")
            }
            for (other, o) in specs where o.forwards.contains(where: { $0.host == f.host && $0.proto == f.proto }) {
                throw .conflict("host port \(f.proto.rawValue) \(f.host) is forwarded to VM '\(other)' already")
            }
        }
    }

    private func makeClone(_ src: VMSpec, _ spec: VMSpec, linked: Bool, task: String) async throws -> VMStatus {
        let from = paths(src.name), to = paths(spec.name)
        var spec = spec
        // the source's disks as they are, made now when it never started
        if src.disks.contains(where: { $0.id.map { !Files.exists(from.disk($0)) } ?? false }) {
            try await prepareDisks(src, from, host: await facts())
        }
        // no VM has this name: anything under its disk dir is left over
        Files.removeTree(to.diskDir)
        try Files.makeDirectories(to.diskDir)
        do {
            for (i, d) in src.disks.enumerated() {
                guard let id = d.id else { continue }
                let info = try await DiskImage.info(from.disk(id))
                if linked {
                    try await runTool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", from.disk(id), "-F", info.format, to.disk(id)])
                } else {
                    let tmp = to.disk(id) + ".tmp"
                    try await runTool(["qemu-img", "convert", "-O", "qcow2", "-f", info.format, from.disk(id), tmp])
                    try syscall("rename \(tmp)") { rename(tmp, to.disk(id)) }
                    // the copy stands alone: a disk of its size, no image under it
                    if let j = spec.disks.firstIndex(where: { $0.id == id }) {
                        spec.disks[j] = DiskSpec(id: id, size: max(info.virtualSize, d.size ?? 0))
                    }
                }
                tasks.update(task) { $0.progress = (i + 1) * 90 / max(1, src.disks.count) }
            }
            if Files.exists(from.efiVars) { try Files.copy(from.efiVars, to: to.efiVars) }
            if linked { try Files.writeAtomically(linkFile(spec.name), src.name + "\n") }
            return try create(spec)
        } catch {
            if specs[spec.name] == nil { Files.removeTree(to.diskDir) }
            throw error
        }
    }
}
