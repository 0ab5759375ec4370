import Config
import Platform

/// A store image a migrating VM needs on its destination.
public struct NeededImage: Sendable, Equatable {
    public var name: String
    /// The file in this node's store.
    public var path: String
    public var size: Int64
    public var sha256: String
}

/// The images of a migration: the source names what the VM uses (kernel,
/// initrd, CD-ROM, disks' base images) with their SHA-256; the destination
/// says which it lacks, and refuses one it holds with other bytes under
/// the same name (the guest would see another disk or kernel there).
extension VMManager {
    /// The store images VM `name` uses, each once.
    public func neededImages(_ name: String) throws -> [NeededImage] {
        guard let spec = specs[name] else { throw VMError.notFound(name: name) }
        var seen: Set<String> = []
        var out: [NeededImage] = []
        for n in spec.imageNames where seen.insert(n).inserted {
            guard let size = Files.size(store.path(n)) else { throw VMError.invalid("needs image '\(n)', which is not in the image store") }
            out.append(NeededImage(name: n, path: store.path(n), size: size, sha256: try store.hash(n)))
        }
        return out
    }

    /// Of `wanted` (image name → SHA-256), the names this store lacks.
    /// One stored here with other bytes is refused, naming it.
    public func lackingImages(_ wanted: [String: String]) throws(VMError) -> [String] {
        var lacking: [String] = []
        for (n, sha) in wanted.sorted(by: { $0.key < $1.key }) {
            if let p = Names.checkImage(n) { throw .badRequest(p) }
            guard store.exists(n) else { lacking.append(n); continue }
            let here: String
            do { here = try store.hash(n) } catch { throw .conflict("image '\(n)' here cannot be read: \(error)") }
            if here != sha {
                throw .conflict("this node has another image named '\(n)' (SHA-256 \(here.prefix(12))…, not \(sha.prefix(12))…)")
            }
        }
        return lacking
    }
}
