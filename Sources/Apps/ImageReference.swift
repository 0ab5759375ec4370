/// An image reference as `docker pull` reads it: `[REGISTRY/]REPO[:TAG][@sha256:HEX]`.
/// The registry is the first path component when it has a dot or a colon
/// or is `localhost`; otherwise Docker Hub, where a one-component name is
/// in `library/`. No tag and no digest means `:latest`.
public struct ImageReference: Sendable, Equatable, CustomStringConvertible {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    public var registry: String
    /// The repository path, lowercase components separated by `/`.
    public var repository: String
    public var tag: String?
    /// `sha256:` and 64 lowercase hex digits.
    public var digest: String?

    public static let dockerHub = "docker.io"

    public init(parsing text: String) throws(AppError) {
        func bad(_ why: String) -> AppError { .badReference(text, why) }
        guard !text.isEmpty, text.utf8.count <= 512 else { throw bad("must be 1 to 512 characters") }
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { throw bad("must be printable ASCII without spaces") }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            guard Self.isDigest(d) else { throw bad("a digest must be sha256: and 64 lowercase hex digits") }
            digest = d
            rest = rest[..<at]
        }
        // a tag is after the last colon that is after the last slash
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let t = String(rest[rest.index(after: colon)...])
            guard Self.isTag(t) else { throw bad("a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'") }
            tag = t
            rest = rest[..<colon]
        }
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            registry = parts.removeFirst()
            guard Self.isRegistry(registry) else { throw bad("'\(registry)' is not a registry host[:port]") }
        } else {
            registry = Self.dockerHub
        }
        if registry == Self.dockerHub && parts.count == 1 { parts.insert("library", at: 0) }
        guard !parts.isEmpty, parts.allSatisfy(Self.isComponent) else {
            throw bad("a repository is lowercase letters and digits, separated by '/', '.', '_' or '-'")
        }
        repository = parts.joined(separator: "/")
        guard repository.utf8.count <= 255 else { throw bad("the repository name is longer than 255 characters") }
        if tag == nil && digest == nil { tag = "latest" }
    }

    /// What the manifests endpoint is asked for: the digest when there is one.
    public var manifestReference: String { digest ?? tag ?? "latest" }

    /// The host the API is reached at (Docker Hub's API host for docker.io).
    public var apiHost: String { registry == Self.dockerHub ? "registry-1.docker.io" : registry }

    public var description: String {
        var s = registry == Self.dockerHub ? repository : registry + "/" + repository
        if registry == Self.dockerHub, s.hasPrefix("library/") { s = String(s.dropFirst(8)) }
        if let tag { s += ":" + tag }
        if let digest { s += "@" + digest }
        return s
    }

    /// `sha256:` and 64 lowercase hex digits (the only digest algorithm accepted).
    public static func isDigest(_ s: String) -> Bool {
        guard s.hasPrefix("sha256:") else { return false }
        let hex = s.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    static func isTag(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard (1...128).contains(u.count), u[0] != 0x2e, u[0] != 0x2d else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == 0x5f || $0 == 0x2e || $0 == 0x2d }
    }

    /// A path component: `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`s.
    static func isComponent(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty, isLowerAlnum(u.first!), isLowerAlnum(u.last!) else { return false }
        var i = 0
        while i < u.count {
            if isLowerAlnum(u[i]) { i += 1; continue }
            var j = i
            while j < u.count, !isLowerAlnum(u[j]) { j += 1 }
            let sep = String(decoding: u[i..<j], as: UTF8.self)
            guard sep == "." || sep == "_" || sep == "__" || sep.allSatisfy({ $0 == "-" }) else { return false }
            i = j
        }
        return true
    }

    /// `host[:port]`: a DNS name or IPv4 address, or `[IPv6]`, and a port 1–65535.
    static func isRegistry(_ s: String) -> Bool {
        var host = Substring(s)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            let inside = host[host.index(after: host.startIndex)..<close]
            guard !inside.isEmpty, inside.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return false }
                port = after.dropFirst()
            }
            host = inside
        } else {
            if let colon = host.firstIndex(of: ":") {
                port = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            let labels = host.split(separator: ".", omittingEmptySubsequences: false)
            guard !host.isEmpty, host.count <= 253, labels.allSatisfy({ l in
                !l.isEmpty && l.count <= 63 && l.first != "-" && l.last != "-"
                    && l.utf8.allSatisfy { isAlnum($0) || $0 == 0x2d }
            }) else { return false }
        }
        if let port {
            guard let p = Int(port), (1...65535).contains(p), port.first != "0" else { return false }
        }
        return true
    }

    /// Loopback registries are spoken to over plain HTTP, as Docker does.
    public var isLoopback: Bool {
        let host: Substring
        if registry.hasPrefix("[") {
            host = registry.dropFirst().prefix(while: { $0 != "]" })
        } else {
            host = registry.prefix(while: { $0 != ":" })
        }
        return host == "localhost" || host.hasPrefix("127.") || host == "::1"
    }

    static func isLowerAlnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
    static func isAlnum(_ c: UInt8) -> Bool { isLowerAlnum(c) || (c >= 0x41 && c <= 0x5a) }
}
