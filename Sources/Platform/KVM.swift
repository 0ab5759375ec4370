#if canImport(Glibc)
import Glibc
#endif
import CKVM
import Synchronization

/// Whether KVM actually works here. `/dev/kvm` existing is not proof: nested
/// cloud VMs expose a device on which guests hang. The probe creates a VM and
/// a vCPU in a child process and runs a few instructions to HLT, with a
/// timeout; the first answer is cached for the life of the process.
public enum KVMProbe {
    public struct Result: Sendable, Equatable {
        public var usable: Bool
        public var reason: String
    }

    private static let cache = Mutex<Result?>(nil)

    /// Probes once (later calls return the cached answer). Set
    /// `CLOUDBIOS_KVM=off` to skip the probe and use TCG.
    public static func probe(timeout: Double = 2.0, device: String = "/dev/kvm") -> (usable: Bool, reason: String) {
        let r = cache.withLock { cached -> Result in
            if let c = cached { return c }
            let fresh = run(timeout: timeout, device: device)
            cached = fresh
            return fresh
        }
        return (r.usable, r.reason)
    }

    /// Probes without the cache.
    public static func run(timeout: Double, device: String = "/dev/kvm") -> Result {
        if let v = getenv("CLOUDBIOS_KVM").map({ String(cString: $0) }), v == "off" {
            return Result(usable: false, reason: "KVM disabled by CLOUDBIOS_KVM=off")
        }
        guard access(device, F_OK) == 0 else { return Result(usable: false, reason: "\(device) does not exist") }
        let ms = Int32(max(0.05, timeout) * 1000)
        let pid = Reaper.shared.spawn { cb_kvm_probe_fork(device, ms) }
        if pid < 0 { return Result(usable: false, reason: "fork failed: \(String(cString: strerror(-pid)))") }
        guard let status = Reaper.shared.wait(pid, timeout: Double(ms) / 1000) else {
            kill(pid, SIGKILL)
            // A vCPU stuck in the kernel dies at its next signal check; reap it
            // but never wait forever.
            if Reaper.shared.wait(pid, timeout: 2) == nil { Reaper.shared.detach(pid) }
            return Result(usable: false, reason: "\(device) is present but a 4M-instruction test guest did not reach HLT within \(ms) ms (KVM hangs or crawls, e.g. broken nested virtualization)")
        }
        var buf = [CChar](repeating: 0, count: 256)
        let ok = cb_kvm_probe_verdict(device, status, &buf, buf.count)
        return Result(usable: ok == 1, reason: String(nulTerminated: buf))
    }
}
