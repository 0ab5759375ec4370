#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// An image from a tarball in the image store (`store:NAME`): an OCI archive
/// (`oci-layout`, `index.json`, `blobs/sha256/…`) or a docker archive
/// (`docker save`: `manifest.json`, a config and layer tars). The archive is
/// unpacked into a scratch directory under the cache; every blob is checked
/// against its digest (a docker archive's layers against the config's
/// `diff_ids`) before it moves into the blob cache.
enum Archive {
    /// What an archive holds for the build: the config, its layers (paths in
    /// the blob cache, bottom first) and the digest that keys the image.
    struct Contents {
        var key: String
        var configBytes: [UInt8]
        var layers: [String]
    }

    static func load(_ path: String, name: String, cache: ImageCache) throws(AppError) -> Contents {
        guard let tar = Launcher.which("tar") else { throw .unavailable("tar is not installed") }
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw .imageNotFound("store:\(name)") }
        let scratch = cache.root + "/.partial-archive-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { Files.removeTree(scratch) }
        do {
            try Files.makeDirectories(cache.blobDir)
            try Files.makeDirectories(scratch)
        } catch { throw .unavailable("\(scratch): \(error)") }
        let r: (status: Int32, output: String)
        do {
            r = try Launcher(tar, ["-xf", path, "-C", scratch, "--no-same-owner", "--no-same-permissions"]).run()
        } catch { throw .unavailable("unpack store:\(name): \(error)") }
        guard r.status == 0 else { throw .invalid("store:\(name) is not a tar archive (an OCI or docker archive)") }
        if Files.exists(scratch + "/index.json") { return try oci(scratch, name: name, cache: cache) }
        if Files.exists(scratch + "/manifest.json") { return try docker(scratch, name: name, cache: cache) }
        throw .invalid("store:\(name) is neither an OCI archive (index.json) nor a docker archive (manifest.json)")
    }

    /// An OCI archive: its index's linux/amd64 image (through nested indexes).
    static func oci(_ dir: String, name: String, cache: ImageCache) throws(AppError) -> Contents {
        var body = try small(dir + "/index.json", what: "store:\(name) index.json")
        var document = try ManifestDocument.parse(body, contentType: MediaType.ociIndex)
        var digest = ""
        for _ in 0..<4 {
            switch document {
            case .index(let entries):
                // an archive of one image may leave its platform out
                let pick = entries.count == 1 && entries[0].platform == nil ? entries[0] : ManifestDocument.pickLinuxAMD64(entries)
                guard let pick else { throw .wrongPlatform(image: "store:\(name)", platforms: entries.compactMap(\.platform)) }
                let path = try keep(pick.digest, from: blob(dir, pick.digest), cache: cache, what: "store:\(name) manifest")
                body = try small(path, what: "store:\(name) manifest")
                digest = pick.digest
                document = try ManifestDocument.parse(body, contentType: pick.mediaType)
            case .manifest(let m):
                let configPath = try keep(m.config.digest, from: blob(dir, m.config.digest), cache: cache, what: "store:\(name) config")
                var layers: [String] = []
                for l in m.layers {
                    layers.append(try keep(l.digest, from: blob(dir, l.digest), cache: cache, what: "store:\(name) layer \(l.digest)"))
                }
                return Contents(key: digest, configBytes: try small(configPath, what: "store:\(name) config"), layers: layers)
            }
        }
        throw .invalid("store:\(name): indexes nested too deep")
    }

    /// A docker archive of one image: the first entry of manifest.json.
    static func docker(_ dir: String, name: String, cache: ImageCache) throws(AppError) -> Contents {
        let json: JSONValue
        do { json = try JSONValue.parse(try small(dir + "/manifest.json", what: "store:\(name) manifest.json")) } catch let e as AppError {
            throw e
        } catch { throw .invalid("store:\(name) manifest.json is not JSON") }
        guard let entry = json[0], let configName = entry["Config"]?.stringValue,
              let layerNames = entry["Layers"]?.arrayValue?.compactMap(\.stringValue) else {
            throw .invalid("store:\(name) manifest.json names no Config and Layers")
        }
        let configFile = try member(dir, configName, name: name)
        let configBytes = try small(configFile, what: "store:\(name) config")
        let configDigest = "sha256:" + hexSHA256(configBytes)
        let diffIDs: [String]
        do {
            diffIDs = try JSONValue.parse(configBytes)["rootfs"]?["diff_ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
        } catch { throw .invalid("store:\(name) config is not JSON") }
        guard diffIDs.count == layerNames.count else {
            throw .invalid("store:\(name): the config lists \(diffIDs.count) layers, manifest.json \(layerNames.count)")
        }
        _ = try keep(configDigest, from: configFile, cache: cache, what: "store:\(name) config")
        var layers: [String] = []
        for (layerName, diffID) in zip(layerNames, diffIDs) {
            guard ImageReference.isDigest(diffID) else { throw .invalid("store:\(name): a diff_id is not a sha256 digest") }
            layers.append(try keep(diffID, from: member(dir, layerName, name: name), cache: cache, what: "store:\(name) layer \(layerName)"))
        }
        return Contents(key: configDigest, configBytes: configBytes, layers: layers)
    }

    /// A blob of an OCI layout.
    static func blob(_ dir: String, _ digest: String) -> String { dir + "/blobs/sha256/" + digest.dropFirst(7) }

    /// A file the archive names: inside it, no `..`, a regular file.
    static func member(_ dir: String, _ path: String, name: String) throws(AppError) -> String {
        guard let rel = RootFS.normalized(path), !rel.isEmpty else { throw .invalid("store:\(name) names a file outside itself") }
        return dir + "/" + rel
    }

    /// Moves an archive's blob into the cache once its digest is checked.
    static func keep(_ digest: String, from path: String, cache: ImageCache, what: String) throws(AppError) -> String {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw .invalid("\(what): missing from the archive") }
        let got: String
        do { got = "sha256:" + (try sha256File(path)) } catch { throw .unavailable("\(what): \(error)") }
        guard got == digest else { throw .digestMismatch(what: what, expected: digest, got: got) }
        let final = cache.blobPath(digest)
        if Files.exists(final) { return final }
        guard rename(path, final) == 0 else { throw .unavailable("keep \(final): \(String(cString: strerror(errno)))") }
        return final
    }

    static func small(_ path: String, what: String) throws(AppError) -> [UInt8] {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw .invalid("\(what): missing") }
        do { return try Files.read(path, limit: 4 << 20) } catch { throw .invalid("\(what): \(error)") }
    }
}
