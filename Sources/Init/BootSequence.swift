/// One named step of the boot. Hardware phases touch the kernel (mounts,
/// modules, network, reboot) and are skipped off-target, so the same
/// sequence runs in tests against a fake root. `PE.boot` runs them in this
/// order, each given what the earlier ones produced (the command line, the
/// volumes, the config phase's outcome) and returning what it produces.
public struct BootPhase: Sendable {
    public let name: String
    public let summary: String
    public let hardware: Bool

    init(_ name: String, _ summary: String, hardware: Bool) {
        self.name = name; self.summary = summary; self.hardware = hardware
    }
}

public enum BootSequence {
    /// The PE's boot, in order.
    public static let phases: [BootPhase] = [
        BootPhase("mounts", "proc, sys, devtmpfs, devpts, /run, /tmp", hardware: true),
        BootPhase("console", "log to the serial console and the screen", hardware: true),
        BootPhase("cmdline", "read the kernel command line", hardware: false),
        BootPhase("modules", "coldplug drivers by modalias; kvm, tun, bridge, loop", hardware: true),
        BootPhase("hotplug", "listen for kernel uevents (new disks, NICs)", hardware: true),
        BootPhase("network", "lo up; DHCP on every wired NIC", hardware: true),
        BootPhase("volumes", "find labelled filesystems; start mounting the payload (cloudbios.sqfs) from its medium", hardware: false),
        BootPhase("config", "find and validate cloudbios.yaml", hardware: false),
        BootPhase("interfaces", "apply network.interfaces: static addresses, bonds, VLANs", hardware: true),
        BootPhase("payload", "once the panel answers: load the payload's drivers, copy it to RAM", hardware: false),
        BootPhase("hostname", "set the hostname", hardware: false),
        BootPhase("storage", "mount the data partition or a tmpfs at /var/lib/cloudbios", hardware: true),
        BootPhase("install", "install to disk headless when the config has install:, then do after:", hardware: true),
        BootPhase("services", "start the daemon and the viewer under supervision", hardware: false),
        BootPhase("status", "show the status screen", hardware: false),
    ]

    public static var names: [String] { phases.map(\.name) }
}
