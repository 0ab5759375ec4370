import Config
import Platform
import Synchronization

/// What a VM's status is worked out from: the manager's definitions and the
/// facts of its running QEMUs, crashes and image imports. `VMManager` is
/// its only writer and publishes a new copy under a lock on every change,
/// so a status can be read from any thread (the panel's HTTP threads)
/// without waiting for the actor, and a read that follows a finished change
/// sees it.
struct StatusFacts: Sendable {
    /// What a status needs of a running VM (`VMManager.Runtime` without the
    /// QMP connection and the bookkeeping of stops).
    struct Running: Sendable {
        var pid: Int32
        var state: VMState
        var panicked: Bool
        var accel: String
        var startedAt: Double
        var generation: Int
        var addresses: [GuestAddress]
        var firmwareNote: String?
    }

    var specs: [String: VMSpec] = [:]
    var running: [String: Running] = [:]
    var crashes: [String: String] = [:]
    var natNote: String?
    var importFailures: [String: String] = [:]
    var downloading: Set<String> = []

    /// The status of VM `name`, nil when there is no such VM. A running VM's
    /// CPU and memory are read from /proc now.
    func status(_ name: String, store: ImageStore, cpu: CPUSampler) -> VMStatus? {
        guard let spec = specs[name] else { return nil }
        guard let rt = running[name] else {
            var s = VMStatus(spec: spec, state: crashes[name] != nil ? .crashed : .stopped)
            s.message = crashes[name] ?? missingImagesMessage(spec, store: store).map { "cannot start: \($0)" }
            return s
        }
        var s = VMStatus(spec: spec, state: rt.panicked ? .crashed : rt.state)
        s.pid = rt.pid > 0 ? rt.pid : nil
        s.addresses = rt.addresses
        s.accel = rt.accel
        let t = now()
        s.uptimeSeconds = Int(t - rt.startedAt)
        if rt.panicked { s.message = "guest panicked" }
        else if let note = rt.firmwareNote { s.message = note }
        if rt.pid > 0, let p = ProcStats.process(rt.pid) {
            s.cpuPercent = cpu.percent(name, generation: rt.generation, cpuSeconds: p.cpuSeconds, at: t)
                .map { ($0 * 10).rounded() / 10 }
            s.memoryUsedMiB = Int(p.rssBytes >> 20)
        }
        if spec.network == .nat, let note = natNote, s.message == nil { s.message = note }
        return s
    }

    /// Every VM's status, by name.
    func list(store: ImageStore, cpu: CPUSampler) -> [VMStatus] {
        specs.keys.sorted().compactMap { status($0, store: store, cpu: cpu) }
    }

    /// Why `spec` cannot start for want of images, or nil when the store
    /// has them all.
    func missingImagesMessage(_ spec: VMSpec, store: ImageStore) -> String? {
        var seen: Set<String> = []
        let missing = spec.imageNames.filter { !store.exists($0) && seen.insert($0).inserted }
        guard let first = missing.first else { return nil }
        var m = missing.count == 1
            ? "needs image '\(first)', which is not in the image store"
            : "needs images \(missing.map { "'\($0)'" }.joined(separator: ", ")), which are not in the image store"
        let reasons = missing.compactMap { importFailures[$0] }
        if !reasons.isEmpty { m += " (import failed: \(reasons.joined(separator: "; ")))" }
        let pending = missing.filter { downloading.contains($0) }
        if !pending.isEmpty { m += " (downloading: \(pending.map { "'\($0)'" }.joined(separator: ", ")))" }
        return m
    }
}

/// A running VM's CPU use, as a percentage of one CPU over at least the
/// last half second: each reading of its QEMU's CPU time is kept, and a
/// new percentage is worked out once half a second has passed since the
/// last one. Readers on any thread share it.
final class CPUSampler: Sendable {
    private struct Sample {
        var generation: Int
        var time: Double
        var cpuSeconds: Double
        var percent: Double?
    }
    private let samples = Mutex<[String: Sample]>([:])

    /// The percentage for VM `name` in its run `generation`, given its CPU
    /// time now; nil until half a second of the run has been seen.
    func percent(_ name: String, generation: Int, cpuSeconds: Double, at t: Double) -> Double? {
        samples.withLock { all in
            guard var s = all[name], s.generation == generation else {
                all[name] = Sample(generation: generation, time: t, cpuSeconds: cpuSeconds, percent: nil)
                return nil
            }
            if t - s.time >= 0.5 {
                s.percent = max(0, (cpuSeconds - s.cpuSeconds) / (t - s.time) * 100)
                s.time = t
                s.cpuSeconds = cpuSeconds
                all[name] = s
            }
            return s.percent
        }
    }

    /// Drops what is known of VM `name` (it stopped or is gone).
    func forget(_ name: String) {
        _ = samples.withLock { $0.removeValue(forKey: name) }
    }
}
