import Config

/// The installed disk's `grub.cfg`, rendered from `images/grub-disk.cfg.in`
/// (installed in the PE as /usr/share/cloudbios/grub-disk.cfg.in).
public enum GrubMenu {
    public static let templatePaths = ["/usr/share/cloudbios/grub-disk.cfg.in", "images/grub-disk.cfg.in"]

    /// Kernel arguments every installed entry passes: the config comes from
    /// the installed config partition, so a forgotten install stick cannot
    /// start another install on the next boot.
    public static let installedArgs = "cloudbios.config=LABEL=\(Layout.configLabel)"

    /// - Parameters:
    ///   - vms: names of the VMs (one entry each, in order).
    ///   - display: the VM the local thin client shows by default (nil = host only).
    public static func render(template: String, systemUUID: String, vms: [String], display: String?, args: String = installedArgs) -> String {
        var lines = template.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var block: [String] = []
        if let b = lines.firstIndex(where: { $0.hasPrefix("#@VM_BEGIN") }),
           let e = lines.firstIndex(where: { $0.hasPrefix("#@VM_END") }), b < e {
            block = Array(lines[(b + 1)..<e])
            lines.removeSubrange(b...e)
        }
        let entries = vms.map { vm in block.map { $0.replacingAll("@VM@", vm) }.joined(separator: "\n") }.joined(separator: "\n")
        let def = display.map { "vm-\($0)" } ?? "host"
        // Placeholders are filled on code lines only: comments may name them.
        return lines.map { line -> String in
            if line.drop(while: { $0 == " " || $0 == "\t" }).hasPrefix("#") { return line }
            return line
                .replacingAll("@VM_ENTRIES@", entries)
                .replacingAll("@SYSTEM_UUID@", systemUUID)
                .replacingAll("@ARGS@", args)
                .replacingAll("@DEFAULT@", def)
        }.joined(separator: "\n")
    }

    /// A copy of images/grub-disk.cfg.in for when the file is not installed.
    public static let builtinTemplate = """
    # CloudBIOS on an installed disk (built-in template).
    serial --unit=0 --speed=115200
    terminal_input console serial
    terminal_output console serial
    set timeout=3
    set default="@DEFAULT@"
    search --no-floppy --fs-uuid --set=root @SYSTEM_UUID@
    # System slots (A/B): slot a's files are at the partition's root, slot b's
    # under /slot-b. grubenv's cb_good is the slot that last reached a healthy
    # panel; cb_next, set by an upgrade, is tried once: cleared here as it boots,
    # so a slot that never comes up (panic=10 reboots it) leaves the next boot
    # to cb_good's.
    set cb_slot=a
    set cb_trial=
    if [ -f /boot/grub/grubenv ]; then
        # (the core image reads no command list: the module is loaded by name)
        insmod loadenv
        # grubenv is $prefix's: Debian's signed GRUB (UEFI) keeps its prefix on
        # the ESP, so it points at the system partition for the while
        set cb_prefix="$prefix"
        set prefix=($root)/boot/grub
        load_env
        if [ -n "$cb_good" ]; then set cb_slot="$cb_good"; fi
        if [ -n "$cb_next" ]; then
            set cb_slot="$cb_next"
            set cb_trial=" cloudbios.trial=1 panic=10"
            set cb_next=
            save_env cb_next
        fi
        set prefix="$cb_prefix"
    fi
    if [ "$cb_slot" = b ]; then set cbsys=/slot-b; else set cb_slot=a; set cbsys=; fi
    set cbargs="console=tty0 console=ttyS0,115200 @ARGS@ cloudbios.slot=$cb_slot$cb_trial"

    @VM_ENTRIES@
    #@VM_BEGIN
    menuentry "CloudBIOS: dual-run @VM@" --id "vm-@VM@" {
        linux $cbsys/vmlinuz $cbargs cloudbios.display=@VM@
        initrd $cbsys/initramfs.img
    }
    #@VM_END

    menuentry "CloudBIOS (host only)" --id host {
        linux $cbsys/vmlinuz $cbargs cloudbios.display=none
        initrd $cbsys/initramfs.img
    }
    menuentry "CloudBIOS (rescue: shell on the console, no services)" --id rescue {
        linux $cbsys/vmlinuz $cbargs cloudbios.rescue=1
        initrd $cbsys/initramfs.img
    }

    """

    /// The config Debian's signed GRUB reads from the ESP
    /// (`/EFI/debian/grub.cfg`): the same search, but the prefix stays on
    /// the ESP, where no module list is, so GRUB never tries to load a
    /// module from disk (Secure Boot forbids it and every refusal prints an
    /// error); the commands the menus use are built into that image.
    public static func signedEarly(systemUUID: String) -> String {
        """
        search --no-floppy --fs-uuid --set=root \(systemUUID)
        if [ -f ($root)/boot/grub/grub.cfg ]; then
            configfile ($root)/boot/grub/grub.cfg
        else
            echo "CloudBIOS: this disk is not completely installed. Boot the installer again."
        fi

        """
    }

    /// The config GRUB's core image runs first: find the system partition by
    /// its UUID (unique per install) and read its grub.cfg.
    public static func early(systemUUID: String) -> String {
        """
        search --no-floppy --fs-uuid --set=root \(systemUUID)
        set prefix=($root)/boot/grub
        if [ -f $prefix/grub.cfg ]; then
            configfile $prefix/grub.cfg
        else
            echo "CloudBIOS: this disk is not completely installed. Boot the installer again."
        fi

        """
    }
}

extension String {
    func replacingAll(_ target: String, _ with: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += with
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        let t = Array(target.utf8)
        guard !t.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].utf8.starts(with: t) {
                return i..<self.utf8.index(i, offsetBy: t.count)
            }
            i = index(after: i)
        }
        return nil
    }
}

