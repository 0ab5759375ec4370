import Config
import Disks
import Platform
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// GRUB's per-VM entries, kept in step with the VMs: one "dual-run NAME"
/// entry each, which boots the host with `cloudbios.display=NAME`. On an
/// ISO or USB boot they go to `boot-menu.cfg` on the CBCONFIG volume the
/// config came from (the ISO's grub.cfg sources it); on an installed system
/// the system partition's `grub.cfg` is rendered again from its template.
/// A file is written (atomically) only when its text changes, and a
/// `boot-menu.cfg` someone wrote by hand is left alone.
public final class BootMenu: Sendable {
    public enum Target: Sendable, Equatable {
        /// `boot-menu.cfg` on a CBCONFIG volume.
        case stick(file: String)
        /// `grub.cfg` of an installed system partition, mounted at `root`
        /// (read-only is fine: it is made writable for the write).
        case installed(root: String, systemUUID: String)
    }

    /// The first line of every `boot-menu.cfg` CloudBIOS writes.
    public static let stickHeader = "# CloudBIOS boot menu entries, one per VM; written by CloudBIOS when VMs change (edits are replaced)."

    /// How long the menu stays when it lists VMs.
    public static let menuSeconds = 3

    public let target: Target
    /// The text last written or found (nothing to do while it stays).
    let last = Mutex<String?>(nil)

    public init(_ target: Target) { self.target = target }

    /// The entries `boot-menu.cfg` holds for these VMs (the ISO's grub.cfg
    /// sets `$cbroot` and `$cbargs` before it sources the file). The ISO
    /// boots after a short hidden countdown; once there are VMs to choose
    /// from, the menu is shown for a few seconds instead, and the first nine
    /// VMs are also one keypress away (1–9), menu shown or not.
    public static func stickText(vms: [String]) -> String {
        var s = stickHeader + "\n"
        if !vms.isEmpty { s += "set timeout_style=menu\nset timeout=\(menuSeconds)\n" }
        for (i, vm) in vms.enumerated() {
            let hotkey = i < 9 ? " --hotkey=\(i + 1)" : ""
            s += """
            menuentry "CloudBIOS: dual-run \(vm)" --id "vm-\(vm)"\(hotkey) {
                linux ($cbroot)/boot/vmlinuz $cbargs cloudbios.display=\(vm)
                initrd ($cbroot)/boot/initramfs.img
            }

            """
        }
        return s
    }

    /// The path written to.
    public var path: String {
        switch target {
        case .stick(let f): f
        case .installed(let root, _): root + "/boot/grub/grub.cfg"
        }
    }

    /// The text for these VMs (names checked by Config's Names already:
    /// nothing else reaches the file).
    public func text(vms: [String], display: String?) -> String {
        let names = vms.filter { Names.checkVM($0) == nil }
        switch target {
        case .stick: return Self.stickText(vms: names)
        case .installed(_, let uuid):
            let template = GrubMenu.templatePaths.lazy.compactMap { try? Files.readString($0) }.first ?? GrubMenu.builtinTemplate
            return GrubMenu.render(template: template, systemUUID: uuid, vms: names, display: display.flatMap { names.contains($0) ? $0 : nil })
        }
    }

    /// Writes the entries for `vms` when they differ from what the file
    /// holds. True when it wrote.
    @discardableResult
    public func sync(vms: [String], display: String?) throws -> Bool {
        let want = text(vms: vms, display: display)
        let p = path
        let target = target
        return try last.withLock { (last: inout String?) throws -> Bool in
            if last == want { return false }
            let now = try? Files.readString(p)
            if now == want { last = want; return false }
            if case .stick = target, let now, !now.isEmpty, !now.hasPrefix(Self.stickHeader) {
                throw InstallError.failed("\(p) was written by hand; CloudBIOS leaves it as it is (remove it to have the VMs' entries kept there)")
            }
            try Mount.withWritable(p) {
                try Files.writeAtomically(p, want)
                Glibc.sync()
            }
            last = want
            return true
        }
    }

    /// The target for this boot: the installed system's partition when the
    /// config came from the installed config partition, else the CBCONFIG
    /// volume holding `configPath` when it is a writable filesystem.
    public static func target(configPath: String?, table: [Mount.Entry] = Mount.table()) -> Target? {
        guard let cfg = configPath, let m = Mount.containing(cfg, table: table), m.source.hasPrefix("/dev/") else { return nil }
        let label = Probe.filesystem(of: m.source)?.label
        if label == BootStick.label, m.type == "vfat" || m.type.hasPrefix("ext") {
            return .stick(file: Files.parent(of: cfg) + "/boot-menu.cfg")
        }
        if label == Layout.configLabel {
            // the system partition beside it, mounted read-only by PID 1 for the payload
            for e in table where e.source.hasPrefix("/dev/") && e.type.hasPrefix("ext") {
                guard let fs = Probe.filesystem(of: e.source), fs.label == Layout.systemLabel, let uuid = fs.uuid,
                      Disks.wholeDiskDevice(e.source) == Disks.wholeDiskDevice(m.source),
                      Files.exists(e.target + "/boot/grub/grub.cfg") else { continue }
                return .installed(root: e.target, systemUUID: uuid)
            }
        }
        return nil
    }
}
