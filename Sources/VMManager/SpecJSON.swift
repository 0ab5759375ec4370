import Config

/// Definitions on disk (`vms/NAME.json`) use the API's JSON (`VMSpec.json`)
/// and are read back with the strict decoder (`VMSpec.decode`).
extension VMSpec {
    /// The spec's rules (`problems()`), whatever decoded it: the first it
    /// breaks is refused.
    func validate() throws(VMError) {
        if let p = problems().first { throw .invalid(p.message) }
    }

    /// Store images this VM refers to.
    var imageNames: [String] {
        var names = [kernel, initrd, cdrom].compactMap { $0 }
        names += disks.compactMap(\.image)
        return names
    }
}
