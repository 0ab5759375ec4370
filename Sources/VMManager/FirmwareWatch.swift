import Platform

/// What a VM's firmware says when it finds nothing to boot: SeaBIOS on its
/// debug port, OVMF by starting its shell on the serial console.
enum FirmwareWatch {
    /// The first bytes of a log (the firmware speaks at the start).
    static func head(_ path: String, _ n: Int = 65536) -> String {
        guard let b = try? Files.read(path, limit: n) else { return "" }
        return String(decoding: b, as: UTF8.self)
    }

    static func problem(firmwareLog: String, serialLog: String) -> String? {
        if head(firmwareLog).contains("No bootable device.") {
            return "firmware: no bootable device (SeaBIOS found nothing to boot on the disks or the CD)"
        }
        let serial = head(serialLog)
        if serial.contains("Shell> ") && (serial.contains("UEFI Interactive Shell") || serial.contains("startup.nsh")) {
            return "firmware: no bootable device (UEFI found nothing to boot and started its shell)"
        }
        return nil
    }
}
