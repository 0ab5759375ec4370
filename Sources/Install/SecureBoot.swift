import Platform

/// Debian's signed UEFI boot chain on the installed ESP, so the disk boots
/// with Secure Boot enforced: shim (signed by Microsoft) as the removable
/// path's `EFI/BOOT/BOOTX64.EFI`, Debian's signed monolithic GRUB beside it
/// as `grubx64.efi` (shim starts that name from its own directory) and
/// MokManager; GRUB starts Debian's signed kernel. That GRUB's built-in
/// prefix is `/EFI/debian` on the ESP, where it reads `grub.cfg`
/// (`GrubMenu.signedEarly`). Without Secure Boot shim starts the same GRUB.
public struct SignedBootChain: Sendable, Equatable {
    public var shim: String
    public var grub: String
    public var mokManager: String

    public init(shim: String, grub: String, mokManager: String) {
        self.shim = shim; self.grub = grub; self.mokManager = mokManager
    }

    /// Where shim-signed and grub-efi-amd64-signed put them (the PE carries them there).
    public static let debian = SignedBootChain(shim: "/usr/lib/shim/shimx64.efi.signed",
                                               grub: "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
                                               mokManager: "/usr/lib/shim/mmx64.efi.signed")

    public var isPresent: Bool { [shim, grub, mokManager].allSatisfy { Files.exists($0) } }

    /// ESP paths (mtools `::/…`) and the file each gets; `early` is the
    /// config written for the signed GRUB.
    func espFiles(early: String) -> [(source: String, target: String)] {
        [(shim, "::/EFI/BOOT/BOOTX64.EFI"), (grub, "::/EFI/BOOT/grubx64.efi"),
         (mokManager, "::/EFI/BOOT/mmx64.efi"), (early, "::/EFI/debian/grub.cfg")]
    }
}
