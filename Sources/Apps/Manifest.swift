import Config

/// The media types of manifests and indexes (OCI and Docker's v2 schema 2).
public enum MediaType {
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    /// What the manifests endpoint is told this client accepts.
    public static let acceptedManifests = [ociIndex, dockerList, ociManifest, dockerManifest]
    /// Layers this client unpacks (tar, gzip or zstd compressed; tar finds out which).
    public static let layers: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
}

/// A content descriptor: what a manifest or index points at.
public struct Descriptor: Sendable, Equatable {
    public var mediaType: String
    public var digest: String
    public var size: Int64
    /// `os/architecture[/variant]` for an index's entries.
    public var platform: String?

    public init(mediaType: String, digest: String, size: Int64, platform: String? = nil) {
        self.mediaType = mediaType; self.digest = digest; self.size = size; self.platform = platform
    }

    init(_ v: JSONValue, what: String) throws(AppError) {
        guard let d = v["digest"]?.stringValue, ImageReference.isDigest(d) else {
            throw .invalid("\(what) has no sha256 digest")
        }
        guard let size = v["size"]?.int64Value, size >= 0 else { throw .invalid("\(what) has no size") }
        mediaType = v["mediaType"]?.stringValue ?? ""
        digest = d
        self.size = size
        if let p = v["platform"], let os = p["os"]?.stringValue, let arch = p["architecture"]?.stringValue {
            platform = [os, arch, p["variant"]?.stringValue].compactMap { $0 }.joined(separator: "/")
        }
    }
}

/// What a manifests endpoint answered: an index of per-platform manifests,
/// or one image's manifest.
public enum ManifestDocument: Sendable, Equatable {
    case index([Descriptor])
    case manifest(ImageManifest)

    /// Parses the body, told its media type by the answer's Content-Type
    /// (the body's own `mediaType` when that is missing or generic).
    public static func parse(_ body: [UInt8], contentType: String?) throws(AppError) -> ManifestDocument {
        let json: JSONValue
        do { json = try JSONValue.parse(body) } catch { throw .invalid("the manifest is not JSON: \(error)") }
        guard json.objectValue != nil else { throw .invalid("the manifest is not a JSON object") }
        var type = contentType.map { String($0.split(separator: ";")[0]).trimmingSpaces } ?? ""
        if !MediaType.acceptedManifests.contains(type) { type = json["mediaType"]?.stringValue ?? "" }
        if type.isEmpty {
            // OCI allows mediaType to be absent: an index has manifests, an image layers
            type = json["manifests"] != nil ? MediaType.ociIndex : MediaType.ociManifest
        }
        switch type {
        case MediaType.ociIndex, MediaType.dockerList:
            guard let list = json["manifests"]?.arrayValue else { throw .invalid("the index has no manifests") }
            var out: [Descriptor] = []
            for (i, m) in list.enumerated() { out.append(try Descriptor(m, what: "the index's manifest \(i)")) }
            return .index(out)
        case MediaType.ociManifest, MediaType.dockerManifest:
            return .manifest(try ImageManifest(json))
        default:
            throw .invalid("unsupported manifest type '\(Names.clip(type))' (schema 1 manifests are not supported)")
        }
    }

    /// The linux/amd64 entry of an index (a `v1` variant, or none, preferred
    /// over others); `nil` when there is none.
    public static func pickLinuxAMD64(_ entries: [Descriptor]) -> Descriptor? {
        let usable = entries.filter { d in
            guard let p = d.platform else { return false }
            return p == "linux/amd64" || p.hasPrefix("linux/amd64/")
        }
        return usable.first { $0.platform == "linux/amd64" || $0.platform == "linux/amd64/v1" } ?? usable.first
    }
}

/// One image's manifest: its config blob and its layers, bottom first.
public struct ImageManifest: Sendable, Equatable {
    public var config: Descriptor
    public var layers: [Descriptor]

    init(_ json: JSONValue) throws(AppError) {
        guard let c = json["config"] else { throw .invalid("the manifest has no config") }
        config = try Descriptor(c, what: "the manifest's config")
        guard let list = json["layers"]?.arrayValue else { throw .invalid("the manifest has no layers") }
        var out: [Descriptor] = []
        for (i, l) in list.enumerated() {
            let d = try Descriptor(l, what: "layer \(i)")
            guard MediaType.layers.contains(d.mediaType) else {
                throw .invalid("layer \(i) has the unsupported type '\(Names.clip(d.mediaType))'")
            }
            out.append(d)
        }
        guard out.count <= 256 else { throw .invalid("more than 256 layers") }
        layers = out
    }
}

/// What an image's config says about running it (its `config` object) and
/// the platform it was built for.
public struct ImageConfig: Sendable, Equatable {
    public var os: String
    public var architecture: String
    public var entrypoint: [String]
    public var cmd: [String]
    /// `KEY=VALUE` lines.
    public var env: [String]
    public var workingDir: String
    /// `user[:group]`, names or numbers; empty for root.
    public var user: String
    /// Ports the image says it listens on (`8080/tcp`), sorted.
    public var exposedPorts: [String]

    public static func parse(_ body: [UInt8]) throws(AppError) -> ImageConfig {
        let json: JSONValue
        do { json = try JSONValue.parse(body) } catch { throw .invalid("the image config is not JSON: \(error)") }
        func strings(_ v: JSONValue?) -> [String] { v?.arrayValue?.compactMap(\.stringValue) ?? [] }
        let c = json["config"]
        return ImageConfig(
            os: json["os"]?.stringValue ?? "", architecture: json["architecture"]?.stringValue ?? "",
            entrypoint: strings(c?["Entrypoint"]), cmd: strings(c?["Cmd"]), env: strings(c?["Env"]),
            workingDir: c?["WorkingDir"]?.stringValue ?? "", user: c?["User"]?.stringValue ?? "",
            exposedPorts: (c?["ExposedPorts"]?.objectValue?.keys).map { $0.sorted() } ?? [])
    }

    /// The config as JSON (kept beside the root filesystem).
    public var json: JSONValue {
        .object([
            "os": .string(os), "architecture": .string(architecture),
            "entrypoint": .array(entrypoint.map { .string($0) }), "cmd": .array(cmd.map { .string($0) }),
            "env": .array(env.map { .string($0) }), "working_dir": .string(workingDir), "user": .string(user),
            "exposed_ports": .array(exposedPorts.map { .string($0) }),
        ])
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
