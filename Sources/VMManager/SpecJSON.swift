import Config

/// Definitions on disk (`vms/NAME.json`) use the API's JSON (`VMSpec.json`)
/// and are read back with the strict decoder (`VMSpec.decode`).
extension VMSpec {
    /// Checks what the manager relies on, whatever decoded the spec.
    func validate() throws(APIError) {
        if let p = validationError() { throw .unprocessable(p) }
        guard disks.count <= 16 else { throw .unprocessable("at most 16 disks") }
        for d in disks {
            if let size = d.size {
                guard size >= 1 << 20 && size <= 64 << 40 else { throw .unprocessable("disk size must be between 1M and 64T") }
            }
            if let n = d.image, let p = Names.checkImage(n) { throw .unprocessable(p) }
        }
    }

    /// Store images this VM refers to.
    var imageNames: [String] {
        var names = [kernel, initrd, cdrom].compactMap { $0 }
        names += disks.compactMap(\.image)
        return names
    }
}
