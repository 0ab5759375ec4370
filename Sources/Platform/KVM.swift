#if canImport(Glibc)
import Glibc
#endif
import CShims
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
        var buf = [CChar](repeating: 0, count: 256)
        let ok = cb_kvm_probe(device, Int32(max(0.05, timeout) * 1000), &buf, buf.count)
        let reason = String(nulTerminated: buf)
        return Result(usable: ok == 1, reason: reason)
    }
}
