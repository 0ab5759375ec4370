/// One named step of the boot. Hardware phases touch the kernel (mounts,
/// modules, network, reboot) and are skipped off-target, so the same
/// sequence runs in tests against a fake root.
public struct BootPhase: Sendable {
    public let name: String
    public let summary: String
    public let hardware: Bool
    let run: @Sendable (PE) throws -> Void

    init(_ name: String, _ summary: String, hardware: Bool, _ run: @escaping @Sendable (PE) throws -> Void) {
        self.name = name; self.summary = summary; self.hardware = hardware; self.run = run
    }
}

public enum BootSequence {
    /// The PE's boot, in order.
    public static let phases: [BootPhase] = [
        BootPhase("mounts", "proc, sys, devtmpfs, devpts, /run, /tmp", hardware: true) { try $0.mountPseudoFilesystems() },
        BootPhase("console", "log to the serial console and the screen", hardware: true) { $0.openConsole() },
        BootPhase("cmdline", "read the kernel command line", hardware: false) { try $0.readCommandLine() },
        BootPhase("modules", "coldplug drivers by modalias; kvm, tun, bridge, loop", hardware: true) { $0.loadModules() },
        BootPhase("hotplug", "listen for kernel uevents (new disks, NICs)", hardware: true) { $0.startHotplug() },
        BootPhase("network", "lo up; DHCP on every wired NIC", hardware: true) { $0.startNetwork() },
        BootPhase("volumes", "find labelled filesystems; start mounting the payload (cloudbios.sqfs) from its medium", hardware: false) { $0.scanVolumes() },
        BootPhase("config", "find and validate cloudbios.yaml", hardware: false) { $0.findConfig() },
        BootPhase("interfaces", "apply network.interfaces: static addresses, bonds, VLANs", hardware: true) { $0.applyNetworkConfig() },
        BootPhase("payload", "once the panel answers: load the payload's drivers, copy it to RAM", hardware: false) { $0.mountPayload() },
        BootPhase("hostname", "set the hostname", hardware: false) { $0.setHostname() },
        BootPhase("storage", "mount the data partition or a tmpfs at /var/lib/cloudbios", hardware: true) { $0.mountStorage() },
        BootPhase("install", "install to disk headless when the config has install:, then do after:", hardware: true) { $0.runInstall() },
        BootPhase("services", "start the daemon and the viewer under supervision", hardware: false) { $0.planServices() },
        BootPhase("status", "show the status screen", hardware: false) { $0.showStatus() },
    ]

    public static var names: [String] { phases.map(\.name) }
}
