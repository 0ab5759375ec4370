/// The rules every VM spec meets, in one place: the limits (`VMLimits`) and
/// the checks (`VMSpec.problems()`). The config decoder reports each problem
/// at its place in the file or request body, the VM manager refuses a
/// definition that has one, and the QEMU command line is built only for a
/// spec without.

/// The bounds of a VM spec, named once.
public enum VMLimits {
    /// Guest memory, MiB (16 MiB to 1 TiB).
    public static let memoryMiB = 16...(1 << 20)
    /// Virtual CPUs.
    public static let cpus = 1...256
    /// Disks of one VM.
    public static let maxDisks = 16
    /// A disk's size, bytes (1M to 64T).
    public static let diskBytes: ClosedRange<Int64> = (1 << 20)...(64 << 40)
    /// Host and guest ports of a forward.
    public static let ports = 1...65535
    /// `order:` among the VMs that start at boot.
    public static let order = -100_000...100_000
    /// cloud-init `user_data:`, bytes.
    public static let maxUserDataBytes = 64 << 10
    /// A guest kernel command line (`append:`), bytes.
    public static let maxAppendBytes = 4096
}

/// One rule a VM spec breaks.
public struct SpecProblem: Sendable, Equatable, CustomStringConvertible {
    /// Where, as a path of the VM's keys: `memory`, `disks[1].id`,
    /// `cloud_init.network`; empty for the VM as a whole.
    public var field: String
    /// What is wrong, for a person. It starts with `field`, so a file of
    /// several VMs puts the VM's own path (`vms[2].`) in front, unless
    /// `namesItself`.
    public var message: String
    /// The message names its subject on its own (a VM name, an SSH key).
    public var namesItself: Bool
    /// For a value given twice, where it was given first.
    public var firstAt: String?

    public init(_ field: String, _ message: String, namesItself: Bool = false, firstAt: String? = nil) {
        self.field = field; self.message = message; self.namesItself = namesItself; self.firstAt = firstAt
    }

    public var description: String { message }
}

extension VMSpec {
    /// Every rule this spec breaks, in the order of its keys; empty when it
    /// is valid. Names go through `Names`, bounds through `VMLimits`.
    public func problems() -> [SpecProblem] {
        var out: [SpecProblem] = []
        if let e = Names.checkVM(name) { out.add("name", e, namesItself: true) }
        if memory < VMLimits.memoryMiB.lowerBound {
            out.add("memory", "memory must be at least \(VMLimits.memoryMiB.lowerBound) MiB")
        } else if memory > VMLimits.memoryMiB.upperBound {
            out.add("memory", "memory \(Self.mib(memory)) is larger than the maximum \(Self.mib(VMLimits.memoryMiB.upperBound))")
        }
        if !VMLimits.cpus.contains(cpus) {
            out.add("cpus", "cpus must be between \(VMLimits.cpus.lowerBound) and \(VMLimits.cpus.upperBound), not \(cpus)")
        }
        for (field, image) in [("kernel", kernel), ("initrd", initrd)] {
            if let image, let e = Names.checkImage(image) { out.add(field, "\(field): \(e)") }
        }
        if let append, let e = Names.checkAppend(append) { out.add("append", e) }
        if let cdrom, let e = Names.checkImage(cdrom) { out.add("cdrom", "cdrom: \(e)") }
        diskProblems(&out)
        if let c = cloudInit { c.problems("cloud_init", &out) }
        forwardProblems(&out)
        if let boot {
            var seen: Set<BootDevice> = []
            for (i, d) in boot.enumerated() where !seen.insert(d).inserted { out.add("boot[\(i)]", "boot names \(d.rawValue) twice") }
        }
        if !VMLimits.order.contains(order) {
            out.add("order", "order must be between \(VMLimits.order.lowerBound) and \(VMLimits.order.upperBound), not \(order)")
        }
        if !forwards.isEmpty && network != .nat {
            out.add("forwards", "forwards need network: nat (a bridged VM is reached at its own address)")
        }
        if initrd != nil && kernel == nil { out.add("", "initrd needs kernel") }
        if append != nil && kernel == nil { out.add("", "append needs kernel") }
        return out
    }

    private func diskProblems(_ out: inout [SpecProblem]) {
        if disks.count > VMLimits.maxDisks { out.add("disks", "disks: at most \(VMLimits.maxDisks) disks") }
        var ids: [String: Int] = [:]
        for (i, d) in disks.enumerated() {
            let dp = "disks[\(i)]"
            if let id = d.id {
                if let e = Names.checkDiskID(id) { out.add(dp + ".id", "\(dp).\(e)") }
                else if let first = ids[id] { out.add(dp + ".id", "\(dp).id '\(id)' is used twice", firstAt: "disks[\(first)].id") }
                else { ids[id] = i }
            }
            if let size = d.size {
                if size < VMLimits.diskBytes.lowerBound {
                    out.add(dp + ".size", "\(dp).size must be at least \(Sizes.format(VMLimits.diskBytes.lowerBound))")
                } else if size > VMLimits.diskBytes.upperBound {
                    out.add(dp + ".size", "\(dp).size \(Sizes.human(size)) is larger than the maximum \(Sizes.human(VMLimits.diskBytes.upperBound))")
                }
            }
            if let image = d.image, let e = Names.checkImage(image) { out.add(dp + ".image", "\(dp).image: \(e)") }
            if d.image == nil && d.size == nil {
                out.add(dp, "\(dp) needs a size (a blank disk) or an image (a copy of a store image)")
            }
        }
    }

    private func forwardProblems(_ out: inout [SpecProblem]) {
        var seen: [String: Int] = [:]
        for (i, f) in forwards.enumerated() {
            let fp = "forwards[\(i)]"
            var valid = true
            for (key, port) in [("host", f.host), ("guest", f.guest)] where !VMLimits.ports.contains(port) {
                out.add("\(fp).\(key)", "\(fp).\(key) must be between \(VMLimits.ports.lowerBound) and \(VMLimits.ports.upperBound), not \(port)")
                valid = false
            }
            guard valid else { continue }
            let key = "\(f.proto.rawValue)/\(f.host)"
            if let first = seen[key] {
                out.add(fp, "\(fp): host port \(f.proto.rawValue) \(f.host) is forwarded twice", firstAt: "forwards[\(first)]")
            } else {
                seen[key] = i
            }
        }
    }

    /// `memory` in words (`1.0 TiB`), whatever its size.
    static func mib(_ m: Int) -> String {
        m <= Int(Int64.max >> 20) ? Sizes.human(Int64(m) << 20) : "\(m) MiB"
    }
}

extension [SpecProblem] {
    mutating func add(_ field: String, _ message: String, namesItself: Bool = false, firstAt: String? = nil) {
        append(SpecProblem(field, message, namesItself: namesItself, firstAt: firstAt))
    }
}

extension CloudInitSpec {
    func problems(_ path: String, _ out: inout [SpecProblem]) {
        if let h = hostname, !StrictDecoder.validHostname(h) {
            out.add(path + ".hostname", "\(path).hostname '\(Names.clip(h))' is not a valid host name")
        }
        if let u = user, let e = Names.checkGuestUser(u) { out.add(path + ".user", "\(path).\(e)") }
        if let h = passwordHash, !Names.isCryptHash(h) {
            out.add(path + ".password_hash", "\(path).password_hash must be a crypt(3) hash ($6$… or $y$…; 'cloudbios passwd' makes one)")
        }
        for (i, k) in sshAuthorizedKeys.enumerated() {
            if let e = Names.checkSSHKey(k) { out.add("\(path).ssh_authorized_keys[\(i)]", e, namesItself: true) }
        }
        if case .staticIPv4(let address, let gateway, let dns) = network {
            if !IPv4.isCIDR(address) {
                out.add(path + ".network", "\(path).network.address must be an IPv4 CIDR like 10.213.0.10/24")
            } else if let gateway, !IPv4.isAddress(gateway) {
                out.add(path + ".network", "\(path).network.gateway must be an IPv4 address")
            }
            for (i, d) in dns.enumerated() where !IPv4.isAddress(d) {
                out.add("\(path).network.dns[\(i)]", "\(path).network.dns entries must be IPv4 addresses")
            }
        }
        if let u = userData, u.utf8.count > VMLimits.maxUserDataBytes {
            out.add(path + ".user_data", "\(path).user_data is larger than \(VMLimits.maxUserDataBytes >> 10) KiB")
        }
    }
}
