#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// An image ready to boot: its digest, what its config says, and its root
/// filesystem.
public struct PulledImage: Sendable, Equatable {
    public var reference: String
    /// The digest of the linux/amd64 manifest.
    public var digest: String
    public var config: ImageConfig
    /// The erofs image (read-only, shared by every app of this image).
    public var rootfs: String
    /// Layers downloaded by this pull (0 when all were kept already).
    public var downloaded: Int
}

/// Pulls an image from its registry into the cache and builds its root
/// filesystem once: index → the linux/amd64 manifest → config and layers
/// (each blob checked against its digest before it is kept) → erofs.
public struct ImagePuller: Sendable {
    public var cache: ImageCache
    /// Registries (`host[:port]`) spoken to over plain HTTP besides loopback ones.
    public var insecure: Set<String>
    public var trust: TLSTrust
    /// The whole pull's limit, in seconds.
    public var timeout: Double

    public init(cache: ImageCache, insecure: Set<String> = [], trust: TLSTrust = .environment, timeout: Double = 1800) {
        self.cache = cache; self.insecure = insecure; self.trust = trust; self.timeout = timeout
    }

    public func pull(_ text: String, progress: (String) -> Void = { _ in }) throws(AppError) -> PulledImage {
        if text.hasPrefix("store:") { return try pullFromStore(String(text.dropFirst(6)), progress: progress) }
        let ref = try ImageReference(parsing: text)
        let deadline = Deadline.after(timeout)
        var registry = Registry(ref, insecure: insecure, trust: trust)
        var top = try registry.manifest(ref.manifestReference, deadline: deadline)
        var document = try ManifestDocument.parse(top.body, contentType: top.type)
        if case .index(let entries) = document {
            guard let pick = ManifestDocument.pickLinuxAMD64(entries) else {
                throw .wrongPlatform(image: ref.description, platforms: entries.compactMap(\.platform))
            }
            top = try registry.manifest(pick.digest, deadline: deadline)
            document = try ManifestDocument.parse(top.body, contentType: top.type)
        }
        guard case .manifest(let manifest) = document else { throw .invalid("\(ref): an index inside an index") }

        let configPath = try cache.blob(manifest.config, from: &registry, deadline: deadline)
        let configBytes: [UInt8]
        do { configBytes = try Files.read(configPath, limit: 4 << 20) } catch { throw .invalid("image config: \(error)") }
        let config = try Self.checkedConfig(configBytes, image: ref.description)

        var downloaded = 0
        if !Files.exists(cache.imageDir(top.digest) + "/rootfs.erofs") {
            var layers: [String] = []
            for (i, layer) in manifest.layers.enumerated() {
                if !Files.exists(cache.blobPath(layer.digest)) {
                    progress("layer \(i + 1)/\(manifest.layers.count) \(layer.digest) (\(Sizes.human(layer.size)))")
                    downloaded += 1
                }
                layers.append(try cache.blob(layer, from: &registry, deadline: deadline))
            }
            progress("root filesystem of \(top.digest)")
            try build(top.digest, layers: layers)
        }
        return try finish(ref.description, key: top.digest, config: config, downloaded: downloaded)
    }

    /// An OCI or docker archive in the image store (`STATE/images/NAME`).
    func pullFromStore(_ name: String, progress: (String) -> Void) throws(AppError) -> PulledImage {
        if let why = Names.checkImage(name) { throw .badReference("store:" + name, why) }
        let path = Files.parent(of: cache.root) + "/images/" + name
        progress("store:\(name)")
        let contents = try Archive.load(path, name: name, cache: cache)
        let config = try Self.checkedConfig(contents.configBytes, image: "store:" + name)
        if !Files.exists(cache.imageDir(contents.key) + "/rootfs.erofs") {
            progress("root filesystem of \(contents.key)")
            try build(contents.key, layers: contents.layers)
        }
        return try finish("store:" + name, key: contents.key, config: config, downloaded: 0)
    }

    /// The image config, refused unless it is for linux/amd64.
    static func checkedConfig(_ bytes: [UInt8], image: String) throws(AppError) -> ImageConfig {
        let config = try ImageConfig.parse(bytes)
        guard config.os == "linux", config.architecture == "amd64" else {
            throw .wrongPlatform(image: image, platforms: ["\(config.os)/\(config.architecture)"])
        }
        return config
    }

    private func build(_ key: String, layers: [String]) throws(AppError) {
        let dir = cache.imageDir(key)
        do { try Files.makeDirectories(dir) } catch { throw .unavailable("\(dir): \(error)") }
        try RootFS.build(layers: layers, output: dir + "/rootfs.erofs")
    }

    private func finish(_ reference: String, key: String, config: ImageConfig, downloaded: Int) throws(AppError) -> PulledImage {
        let dir = cache.imageDir(key)
        // apps of one image may be pulled at once: each writes a file of its own, then renames it
        let partial = dir + "/.partial-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try Files.writeAtomically(partial, config.json.serialized(pretty: true) + "\n")
            guard rename(partial, dir + "/config.json") == 0 else { throw SystemError.current("rename \(partial)") }
        } catch {
            unlink(partial)
            throw .unavailable("\(dir)/config.json: \(error)")
        }
        return PulledImage(reference: reference, digest: key, config: config, rootfs: dir + "/rootfs.erofs", downloaded: downloaded)
    }
}
