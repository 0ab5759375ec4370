/// An `http://` or `https://` URL as the client uses it: where to connect
/// (`host`, `port`, whether with TLS) and what to ask for (`target`: the
/// path and query). No user info; the fragment is dropped.
public struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    /// What makes a text unusable as a URL.
    public enum Problem: Sendable, Equatable {
        /// Not http:// or https://.
        case scheme
        /// No host, a host with characters a name or an address cannot
        /// have, user info, or a port outside 1…65535.
        case host
        /// Spaces or control characters in the path or query.
        case path
    }

    public var tls: Bool
    /// The name or address, without the brackets of an IPv6 address.
    public var host: String
    public var port: Int
    /// The path and query, `/` at least.
    public var target: String

    public init(tls: Bool, host: String, port: Int, target: String = "/") {
        self.tls = tls; self.host = host; self.port = port; self.target = target
    }

    /// Parses `http[s]://HOST[:PORT][/PATH][?QUERY][#FRAGMENT]` (the scheme
    /// in any case; HOST a name, an IPv4 address or `[IPv6]`).
    public init(parsing text: String) throws(NetError) {
        let lower = text.prefix(8).lowercased()
        if lower.hasPrefix("https://") { tls = true } else if lower.hasPrefix("http://") { tls = false } else { throw .badURL(.scheme) }
        let rest = text.dropFirst(tls ? 8 : 7)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var after = rest.dropFirst(authority.count)
        if let hash = after.firstIndex(of: "#") { after = after[..<hash] }
        guard let (host, port) = Self.authority(authority, defaultPort: tls ? 443 : 80) else { throw .badURL(.host) }
        self.host = host
        self.port = port
        target = after.isEmpty ? "/" : after.hasPrefix("?") ? "/" + after : String(after)
        guard Self.isPrintable(target) else { throw .badURL(.path) }
    }

    /// `HOST[:PORT]` or `[IPv6][:PORT]`.
    static func authority(_ s: Substring, defaultPort: Int) -> (String, Int)? {
        var host: Substring
        var portText: Substring?
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let tail = s[s.index(after: close)...]
            if !tail.isEmpty {
                guard tail.hasPrefix(":") else { return nil }
                portText = tail.dropFirst()
            }
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            host = s
            if let colon = s.firstIndex(of: ":") {
                host = s[..<colon]
                portText = s[s.index(after: colon)...]
            }
            guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }) else { return nil }
        }
        guard !host.isEmpty else { return nil }
        guard let portText else { return (String(host), defaultPort) }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(\.isASCII), let port = Int(portText),
              (1...65535).contains(port) else { return nil }
        return (String(host), port)
    }

    /// Visible ASCII only (no spaces, no control characters).
    static func isPrintable(_ s: String) -> Bool { s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f } }

    /// Whether `port` is the scheme's own (left out of `Host`).
    public var isDefaultPort: Bool { port == (tls ? 443 : 80) }

    /// What the `Host` header says: the host, and the port unless it is the
    /// scheme's.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return isDefaultPort ? h : "\(h):\(port)"
    }

    /// `https://host:port`, for messages.
    public var origin: String {
        (tls ? "https://" : "http://") + (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
    }

    public var description: String { (tls ? "https://" : "http://") + hostHeader + target }

    /// Where a redirect's `Location` points from here: an absolute http(s)
    /// URL, `//host/path` (this scheme), an absolute path, a relative path
    /// or a query (RFC 3986 section 5.2, dot segments removed). Other
    /// schemes and unprintable text are refused.
    public func resolving(_ location: String) throws(NetError) -> HTTPURL {
        guard !location.isEmpty, Self.isPrintable(location) else { throw .badRedirect(location) }
        let lower = location.prefix(8).lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            do { return try HTTPURL(parsing: location) } catch { throw .badRedirect(location) }
        }
        if location.hasPrefix("//") {
            do { return try HTTPURL(parsing: (tls ? "https:" : "http:") + location) } catch { throw .badRedirect(location) }
        }
        // another scheme ("ftp:", "mailto:"): a colon before any / ? #
        let head = location.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if head.contains(":") { throw .badRedirect(location) }

        var reference = Substring(location)
        if let hash = reference.firstIndex(of: "#") { reference = reference[..<hash] }
        let basePath = target.prefix { $0 != "?" }
        var next = self
        if reference.isEmpty {
            return next
        } else if reference.hasPrefix("?") {
            next.target = String(basePath) + reference
        } else {
            let path = reference.prefix { $0 != "?" }
            let query = reference.dropFirst(path.count)
            // a relative path replaces the last segment of this one
            let directory = basePath.lastIndex(of: "/").map { basePath[...$0] } ?? "/"
            let merged = path.hasPrefix("/") ? String(path) : String(directory) + path
            next.target = Self.removingDotSegments(merged) + query
        }
        return next
    }

    /// `/a/b/../c/./d` → `/a/c/d` (never above the root).
    static func removingDotSegments(_ path: String) -> String {
        var out: [Substring] = []
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for (i, segment) in segments.enumerated() {
            let last = i == segments.count - 1
            switch segment {
            case ".": if last { out.append("") }
            case "..":
                if !out.isEmpty { out.removeLast() }
                if last { out.append("") }
            default: out.append(segment)
            }
        }
        return "/" + out.joined(separator: "/")
    }
}
