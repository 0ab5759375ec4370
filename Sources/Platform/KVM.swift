import CShims

/// Whether hardware virtualization really works here. `/dev/kvm` existing is
/// not proof: nested cloud VMs can expose one on which guests hang, so the
/// probe runs a few guest instructions to HLT with a timeout.
public enum KVM {
    public struct Probe: Equatable, Sendable {
        public var usable: Bool
        /// Why (shown to the user next to the accel choice).
        public var reason: String
    }

    public static func probe(device: String = "/dev/kvm", timeoutMilliseconds: Int = 1000) -> Probe {
        var buf = [CChar](repeating: 0, count: 256)
        let ok = cb_kvm_probe(device, Int32(timeoutMilliseconds), &buf, Int32(buf.count))
        let reason = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return Probe(usable: ok == 1, reason: reason)
    }
}
