// Apps: container images run as microVMs. This module owns pulling images
// (the OCI distribution API, OCI/docker archives), the layer cache shared
// between apps, the read-only root filesystem built once per image, the
// microVMs apps run in (their initramfs, `app-init` as their PID 1) and the
// manager that keeps them.
import Config

/// Why an image cannot be pulled or turned into a root filesystem. The
/// message is what a person reads; the kind is what the panel answers with.
public enum AppError: DomainError, Sendable, Equatable {
    /// An image reference that cannot be parsed (the reference, why).
    case badReference(String, String)
    /// The registry has no such repository, tag or digest.
    case imageNotFound(String)
    /// The image exists, but not for linux/amd64 (the platforms it has).
    case wrongPlatform(image: String, platforms: [String])
    /// What was downloaded is not what its digest promised.
    case digestMismatch(what: String, expected: String, got: String)
    /// The registry answered something this client cannot use.
    case registry(String)
    /// The registry could not be reached or the transfer broke.
    case network(String)
    /// The image's content is not a usable image (a bad manifest, a layer
    /// tar that does not unpack, a path escaping the root).
    case invalid(String)
    /// A tool the host needs is missing, or failed (tar, mkfs.erofs).
    case unavailable(String)
    /// A request about apps that is malformed (a bad name, port, size).
    case badRequest(String)
    /// No app of that name.
    case appNotFound(String)
    /// The present state forbids it: a name or host port taken, an app not running.
    case conflict(String)
    /// The app's microVM did not start or does not answer.
    case failed(String)

    public var kind: ErrorKind {
        switch self {
        case .badReference: .badRequest
        case .imageNotFound: .notFound
        case .wrongPlatform, .digestMismatch, .invalid: .invalid
        case .registry, .network: .failed
        case .unavailable: .unavailable
        case .badRequest: .badRequest
        case .appNotFound: .notFound
        case .conflict: .conflict
        case .failed: .failed
        }
    }

    public var description: String {
        switch self {
        case .badReference(let ref, let why): "image '\(Names.clip(ref))': \(why)"
        case .imageNotFound(let ref): "image '\(Names.clip(ref))' not found in its registry"
        case .wrongPlatform(let image, let platforms):
            "image '\(Names.clip(image))' has no linux/amd64 variant (it has: \(platforms.isEmpty ? "none" : platforms.joined(separator: ", ")))"
        case .digestMismatch(let what, let expected, let got):
            "\(what): digest mismatch (expected \(expected), got \(got)); nothing was kept"
        case .registry(let why): "registry: \(why)"
        case .network(let why): "registry: \(why)"
        case .invalid(let why): "image: \(why)"
        case .unavailable(let why), .badRequest(let why), .conflict(let why), .failed(let why): why
        case .appNotFound(let name): "no app '\(Names.clip(name))'"
        }
    }
}
