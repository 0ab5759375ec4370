import Config

/// Why the VM manager refuses or fails an operation on a VM. The message is
/// what a person reads; the kind is what the panel answers with.
public enum VMError: DomainError, Sendable, Equatable {
    /// No VM of this name.
    case notFound(name: String)
    /// A VM of this name exists already.
    case exists(name: String)
    /// The VM must run for this, and does not.
    case notRunning(name: String)
    /// Its state forbids it now (running, starting, busy), or a host port
    /// it forwards is taken.
    case conflict(String)
    /// The definition breaks a rule (`VMSpec.problems()`), names an image
    /// that is not in the store, or asks what cannot be (a disk shrunk).
    case invalid(String)
    /// A malformed argument.
    case badRequest(String)
    /// The host lacks what the VM needs (the hypervisor, a bridge, a tool).
    case unavailable(String)
    /// The definition could not be written.
    case cannotSave(name: String, reason: String)
    /// QEMU was started and did not come up.
    case startFailed(String)

    public var kind: ErrorKind {
        switch self {
        case .notFound: .notFound
        case .exists, .notRunning, .conflict: .conflict
        case .invalid: .invalid
        case .badRequest: .badRequest
        case .unavailable: .unavailable
        case .cannotSave: .noSpace
        case .startFailed: .failed
        }
    }

    public var description: String {
        switch self {
        case .notFound(let name): "no VM named '\(Names.clip(name))'"
        case .exists(let name): "VM '\(name)' already exists"
        case .notRunning(let name): "VM '\(name)' is not running"
        case .cannotSave(let name, let reason): "cannot save VM '\(name)': \(reason)"
        case .conflict(let m), .invalid(let m), .badRequest(let m), .unavailable(let m), .startFailed(let m): m
        }
    }
}

/// Why the image store refuses or fails an upload, an import or a removal.
public enum ImageError: DomainError, Sendable, Equatable {
    /// No image of this name.
    case notFound(name: String)
    /// A config image's file is not there.
    case sourceMissing(name: String, path: String)
    /// Not a valid image name (`Names.checkImage`), or an upload cut short.
    case badRequest(String)
    /// In use by a VM, or being uploaded or imported already.
    case conflict(String)
    /// Larger than the store takes.
    case tooLarge(String)
    /// Not acceptable: a wrong checksum, a download that went wrong.
    case invalid(String)
    /// No room left in the store.
    case noSpace(String)
    /// The store is going away (the daemon stops).
    case unavailable(String)

    public var kind: ErrorKind {
        switch self {
        case .notFound, .sourceMissing: .notFound
        case .badRequest: .badRequest
        case .conflict: .conflict
        case .tooLarge: .tooLarge
        case .invalid: .invalid
        case .noSpace: .noSpace
        case .unavailable: .unavailable
        }
    }

    public var description: String {
        switch self {
        case .notFound(let name): "no image named '\(name)'"
        case .sourceMissing(let name, let path): "image '\(name)': \(path) does not exist"
        case .badRequest(let m), .conflict(let m), .tooLarge(let m), .invalid(let m), .noSpace(let m), .unavailable(let m): m
        }
    }
}
