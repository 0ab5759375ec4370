import Config

/// Facts about the host that shape a QEMU command line. Gathered once by the
/// VM manager (KVM probe, firmware files, bridges) so `QEMUCommand.argv`
/// stays a pure function.
public struct HostFacts: Sendable, Equatable {
    /// The KVM probe's answer.
    public var kvmUsable: Bool
    public var kvmReason: String
    /// OVMF code and the vars template (UEFI), when installed.
    public var ovmfCode: String?
    public var ovmfVarsTemplate: String?
    /// How `network: nat` is provided on this host.
    public var nat: NATBackend
    /// The bridge onto the physical NIC for `network: bridge` (`vmbr0`), when it exists.
    public var physicalBridge: String?

    public enum NATBackend: Sendable, Equatable {
        /// Taps on the host-internal bridge (`cbnat0`) with DHCP and masquerading.
        case bridge(String)
        /// QEMU user networking (no bridge here); the string says why.
        case user(reason: String)
    }

    public init(kvmUsable: Bool, kvmReason: String, ovmfCode: String? = nil, ovmfVarsTemplate: String? = nil,
                nat: NATBackend = .user(reason: "no NAT bridge"), physicalBridge: String? = nil) {
        self.kvmUsable = kvmUsable; self.kvmReason = kvmReason
        self.ovmfCode = ovmfCode; self.ovmfVarsTemplate = ovmfVarsTemplate
        self.nat = nat; self.physicalBridge = physicalBridge
    }
}

/// Every path that belongs to one VM, built from the state dir and its
/// validated name only.
///
/// ```
/// STATE/vms/NAME.json        definition
/// STATE/disks/NAME/ID.qcow2, efivars.fd, cidata.img (cloud-init seed)
/// STATE/run/NAME/qmp.sock vnc.sock qga.sock serial.log qemu.pid qemu.log
/// ```
public struct VMPaths: Sendable, Equatable {
    public var name: String
    public var stateDir: String

    public init(stateDir: String, name: String) {
        self.stateDir = stateDir
        self.name = name
    }

    public var definition: String { "\(stateDir)/vms/\(name).json" }
    public var runDir: String { "\(stateDir)/run/\(name)" }
    public var qmpSocket: String { "\(runDir)/qmp.sock" }
    public var vncSocket: String { "\(runDir)/vnc.sock" }
    public var serialLog: String { "\(runDir)/serial.log" }
    /// The serial console, interactive (one client at a time; everything
    /// the guest writes also goes to `serialLog`).
    public var serialSocket: String { "\(runDir)/serial.sock" }
    /// The serial log's previous part, once it grew past its limit.
    public var serialLogRotated: String { "\(runDir)/serial.log.1" }
    public var pidFile: String { "\(runDir)/qemu.pid" }
    /// QEMU's own stderr (errors before it daemonizes).
    public var qemuLog: String { "\(runDir)/qemu.log" }
    public var diskDir: String { "\(stateDir)/disks/\(name)" }
    /// A disk's file, named by the disk's id (validated: `Names.checkDiskID`).
    public func disk(_ id: String) -> String { "\(diskDir)/\(id).qcow2" }
    /// The cloud-init NoCloud seed (a FAT volume labelled CIDATA).
    public var cloudInitSeed: String { "\(diskDir)/cidata.img" }
    /// The qemu-guest-agent channel.
    public var agentSocket: String { "\(runDir)/qga.sock" }
    /// SeaBIOS's debug console (what it says when nothing boots).
    public var firmwareLog: String { "\(runDir)/firmware.log" }
    public var efiVars: String { "\(diskDir)/efivars.fd" }
}

/// Where store images live; resolves validated names to paths.
public struct ImageResolver: Sendable, Equatable {
    public var directory: String
    public init(directory: String) { self.directory = directory }

    public func path(_ name: String) throws(QEMUError) -> String {
        if let problem = Names.checkImage(name) { throw .invalid(problem) }
        return "\(directory)/\(name)"
    }
}

public enum QEMUError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)
    case unavailable(String)
    public var description: String {
        switch self {
        case .invalid(let m), .unavailable(let m): m
        }
    }
}

/// VM spec → QEMU argv. Pure: the same inputs give the same argv, which the
/// golden tests pin down one argument per line.
public enum QEMUCommand {
    /// The chardev the serial log is written through (QMP names it).
    public static let serialChardev = "serial0"
    public static let binary = "qemu-system-x86_64"

    /// The accelerator a spec gets on this host and why.
    public static func accel(for spec: VMSpec, host: HostFacts) throws(QEMUError) -> (name: String, reason: String) {
        switch spec.accel {
        case .tcg: return ("tcg", "accel: tcg requested")
        case .kvm:
            guard host.kvmUsable else { throw .unavailable("accel: kvm requested but KVM is not usable: \(host.kvmReason)") }
            return ("kvm", host.kvmReason)
        case .auto:
            return host.kvmUsable ? ("kvm", host.kvmReason) : ("tcg", "KVM not usable, using TCG (slow): \(host.kvmReason)")
        }
    }

    /// Stable locally administered MAC for a VM (52:54:00 is QEMU's prefix).
    public static func mac(for name: String) -> String {
        let h = fnv1a(name)
        let b = [UInt8(truncatingIfNeeded: h >> 16), UInt8(truncatingIfNeeded: h >> 8), UInt8(truncatingIfNeeded: h)]
        return "52:54:00:" + b.map { hex2($0) }.joined(separator: ":")
    }

    /// The CPU model under TCG: x86-64-v2 (what current distributions and
    /// Windows 11 require: SSSE3, SSE4.1/4.2, POPCNT, CMPXCHG16B) on QEMU's
    /// baseline model. Not `max`: that also shows the guest AVX/AVX2 (whose
    /// emulation its libc then prefers, and which costs more than the SSE
    /// paths), 5-level paging and SVM, nested virtualisation TCG guests have
    /// no use for. Under KVM the guest gets the host's own CPU.
    public static let tcgCPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16"

    /// Host tap device for a VM (interface names are at most 15 bytes).
    public static func tapName(for name: String) -> String {
        "cbt" + String(fnv1a(name) & 0xffff_ffff, radix: 16).leftPadded(to: 8)
    }

    /// The command line of a valid spec (`VMSpec.problems()` is empty; the
    /// first problem is thrown otherwise, so no name or value that breaks a
    /// rule reaches an option).
    public static func argv(spec given: VMSpec, host: HostFacts, paths: VMPaths, images: ImageResolver) throws(QEMUError) -> [String] {
        var spec = given
        spec.assignDiskIDs()
        if let problem = spec.problems().first { throw .invalid(problem.message) }
        guard spec.name == paths.name else { throw .invalid("paths are for '\(paths.name)', not '\(spec.name)'") }
        try checkPath(paths.stateDir)
        try checkPath(images.directory)

        let (accelName, _) = try accel(for: spec, host: host)
        var a: [String] = [binary]
        a += ["-name", "guest=\(escape(spec.name)),debug-threads=on"]
        a += ["-nodefaults", "-no-user-config"]
        a += ["-machine", "q35"]
        a += ["-accel", accelName == "kvm" ? "kvm" : "tcg"]
        a += ["-cpu", accelName == "kvm" ? "host" : tcgCPU]
        a += ["-m", "\(spec.memory)"]
        a += ["-smp", "\(spec.cpus)"]
        a += ["-rtc", "base=utc"]

        // control, console and display: Unix sockets and files in the run dir only
        a += ["-chardev", "socket,id=qmp,path=\(escape(paths.qmpSocket)),server=on,wait=off"]
        a += ["-mon", "chardev=qmp,mode=control"]
        a += ["-chardev", "socket,id=\(serialChardev),path=\(escape(paths.serialSocket)),server=on,wait=off,"
                + "logfile=\(escape(paths.serialLog)),logappend=on"]
        a += ["-serial", "chardev:\(serialChardev)"]
        a += ["-vnc", "unix:\(escape(paths.vncSocket))"]
        a += ["-display", "none"]
        a += ["-vga", "std"]
        a += ["-pidfile", paths.pidFile]
        a += ["-daemonize"]

        // firmware
        switch spec.firmware {
        case .bios:
            // SeaBIOS, QEMU's default; its debug port tells when nothing boots
            a += ["-chardev", "file,id=fwlog,path=\(escape(paths.firmwareLog))"]
            a += ["-device", "isa-debugcon,iobase=0x402,chardev=fwlog"]
        case .uefi:
            guard let code = host.ovmfCode, host.ovmfVarsTemplate != nil else {
                throw .unavailable("firmware: uefi needs OVMF (install the ovmf package)")
            }
            try checkPath(code)
            a += ["-drive", "if=pflash,unit=0,format=raw,readonly=on,file=\(escape(code))"]
            a += ["-drive", "if=pflash,unit=1,format=raw,file=\(escape(paths.efiVars))"]
        }

        // direct kernel boot
        if let kernel = spec.kernel {
            a += ["-kernel", try images.path(kernel)]
            if let initrd = spec.initrd { a += ["-initrd", try images.path(initrd)] }
            if let append = spec.append { a += ["-append", append] }
        }

        // input: absolute pointer for VNC
        a += ["-device", "qemu-xhci,id=xhci"]
        a += ["-device", "usb-tablet,bus=xhci.0"]

        // disks and the CD drive in boot order (the drive is always there,
        // empty without a medium, so media can change while the VM runs)
        let order = spec.boot ?? (spec.cdrom != nil ? [.cdrom, .disk] : [.disk, .cdrom])
        let cdFirst = (order.firstIndex(of: .cdrom) ?? Int.max) < (order.firstIndex(of: .disk) ?? Int.max)
        let cdBoots = order.contains(.cdrom)
        let disksBoot = order.contains(.disk)
        var bootIndex = cdFirst && cdBoots ? 2 : 1
        for disk in spec.disks {
            let id = disk.id ?? ""
            a += ["-drive", "if=none,id=disk-\(id),format=qcow2,file=\(escape(paths.disk(id))),discard=unmap"]
            a += ["-device", "virtio-blk-pci,drive=disk-\(id),id=virtio-disk-\(id)" + (disksBoot ? ",bootindex=\(bootIndex)" : "")]
            if disksBoot { bootIndex += 1 }
        }
        let cdIndex = cdFirst ? 1 : bootIndex
        if let cdrom = spec.cdrom {
            let p = try images.path(cdrom)
            a += ["-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=\(escape(p))"]
        } else {
            a += ["-drive", "if=none,id=cd0,media=cdrom,readonly=on"]
        }
        a += ["-device", "ide-cd,bus=ide.1,drive=cd0,id=cdrom0" + (cdBoots ? ",bootindex=\(cdIndex)" : "")]
        // the cloud-init seed: a read-only drive of its own, never booted
        if spec.cloudInit != nil {
            a += ["-drive", "if=none,id=cidata,format=raw,readonly=on,file=\(escape(paths.cloudInitSeed))"]
            a += ["-device", "virtio-blk-pci,drive=cidata,id=virtio-cidata"]
        }
        // the guest agent's channel
        if spec.agent {
            a += ["-chardev", "socket,id=qga0,path=\(escape(paths.agentSocket)),server=on,wait=off"]
            a += ["-device", "virtio-serial-pci,id=vser0"]
            a += ["-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"]
        }

        // network
        let mac = mac(for: spec.name)
        switch spec.network {
        case .none:
            break
        case .nat:
            switch host.nat {
            case .bridge:
                a += ["-netdev", "tap,id=net0,ifname=\(tapName(for: spec.name)),script=no,downscript=no"]
            case .user:
                // forwards from any host address to the guest
                let fwd = spec.forwards.map { ",hostfwd=\($0.proto.rawValue)::\($0.host)-:\($0.guest)" }.joined()
                a += ["-netdev", "user,id=net0" + fwd]
            }
            a += ["-device", "virtio-net-pci,netdev=net0,mac=\(mac),id=nic0"]
        case .bridge:
            guard host.physicalBridge != nil else {
                throw .unavailable("network: bridge needs the host bridge vmbr0, which does not exist here")
            }
            a += ["-netdev", "tap,id=net0,ifname=\(tapName(for: spec.name)),script=no,downscript=no"]
            a += ["-device", "virtio-net-pci,netdev=net0,mac=\(mac),id=nic0"]
        }

        a += ["-device", "virtio-rng-pci,id=rng0"]
        // guest kernel panics reach QMP as GUEST_PANICKED
        a += ["-device", "pvpanic"]
        return a
    }

    /// QEMU option values separate keys with commas; a literal comma is `,,`.
    public static func escape(_ value: String) -> String {
        value.replacingAll(",", with: ",,")
    }

    /// Directories and files we put into options must be plain absolute
    /// paths: printable ASCII, no commas, no `..`.
    public static func checkPath(_ path: String) throws(QEMUError) {
        guard path.hasPrefix("/") else { throw .invalid("path '\(Names.clip(path))' must be absolute") }
        guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "\\") }) else {
            throw .invalid("path '\(Names.clip(path))' may contain only printable ASCII without spaces or commas")
        }
        guard !path.split(separator: "/").contains("..") else { throw .invalid("path '\(Names.clip(path))' must not contain '..'") }
    }

    /// FNV-1a: stable names from content (MACs, taps, instance ids), not a security hash.
    public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h ^= UInt64(b); h = h &* 0x100_0000_01b3 }
        return h
    }

    static func hex2(_ b: UInt8) -> String {
        let d = Array("0123456789abcdef")
        return String([d[Int(b >> 4)], d[Int(b & 15)]])
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }

    func leftPadded(to n: Int) -> String {
        count >= n ? self : String(repeating: "0", count: n - count) + self
    }
}
