#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// A client of one image's registry (the OCI distribution API): manifests
/// and blobs of its repository, anonymous bearer tokens fetched when the
/// registry asks for them (`WWW-Authenticate: Bearer realm=…`), redirects
/// followed by hand so a token never goes to another host. HTTPS with the
/// certificate checked, except for loopback registries and those named
/// insecure: those are tried over HTTPS without a check, then over plain
/// HTTP when they do not speak TLS (as Docker does).
public struct Registry {
    public let reference: ImageReference
    let client: HTTPClient
    /// Whether the certificate is checked (not for loopback or insecure registries).
    let verified: Bool
    /// HTTPS (decided by the first exchange when not `verified`).
    private var tls = true
    private var probed: Bool
    /// The token the registry gave for this repository, once asked.
    private var token: String?

    public static let maxManifest = 4 << 20
    static let maxRedirects = 5

    public init(_ reference: ImageReference, insecure: Set<String> = [], trust: TLSTrust = .system, timeout: Double = 30) {
        self.reference = reference
        verified = !(reference.isLoopback || insecure.contains(reference.registry))
        probed = verified
        client = HTTPClient(trust: verified ? trust : .none, timeout: timeout, redirects: 0, readSize: 1 << 20)
    }

    /// A manifest or index by tag or digest: its bytes, media type and
    /// digest (checked against the digest asked for, and against the one
    /// the registry announces).
    public mutating func manifest(_ ref: String, deadline: Deadline) throws(AppError) -> (body: [UInt8], type: String?, digest: String) {
        let path = "/v2/\(reference.repository)/manifests/\(ref)"
        let (exchange, body) = try get(path, accept: MediaType.acceptedManifests, deadline: deadline) { ex throws(AppError) in
            do throws(NetError) { return try ex.readBody(limit: Self.maxManifest) } catch { throw Self.netError(error) }
        }
        let digest = "sha256:" + hexSHA256(body)
        if ImageReference.isDigest(ref), ref != digest {
            throw .digestMismatch(what: "manifest \(ref)", expected: ref, got: digest)
        }
        if let announced = exchange.head.header("docker-content-digest"), ImageReference.isDigest(announced), announced != digest {
            throw .digestMismatch(what: "manifest \(reference)", expected: announced, got: digest)
        }
        return (body, exchange.head.header("content-type"), digest)
    }

    /// Streams a blob to `sink`, at most `size` bytes (the descriptor's).
    public mutating func blob(_ d: Descriptor, deadline: Deadline, into sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        let path = "/v2/\(reference.repository)/blobs/\(d.digest)"
        return try get(path, accept: ["*/*"], deadline: deadline) { ex throws(AppError) -> Int64 in
            do {
                let n = try ex.readBody(limit: d.size, into: sink)
                guard n == d.size else { throw AppError.invalid("blob \(d.digest) has \(n) bytes, its manifest says \(d.size)") }
                return n
            } catch let e as AppError {
                throw e
            } catch let e as NetError {
                if case .tooLarge = e { throw .invalid("blob \(d.digest) is larger than its manifest's \(d.size) bytes") }
                throw Self.netError(e)
            } catch {
                throw .unavailable("\(error)")
            }
        }.1
    }

    /// GETs `path` on the registry, once more with a token after a 401 that
    /// asks for one, following redirects; `read` takes a 200's body.
    private mutating func get<T>(_ path: String, accept: [String], deadline: Deadline,
                                 read: (HTTPExchange) throws(AppError) -> T) throws(AppError) -> (HTTPExchange, T) {
        if !probed { try probe(deadline: deadline) }
        let origin = HTTPURL(tls: tls, host: hostOnly, port: port, target: path)
        var triedToken = false
        while true {
            var url = origin
            var redirects = 0
            var exchange: HTTPExchange
            while true {
                var headers = [HTTPField("Accept", accept.joined(separator: ", "))]
                // the token is for the registry only, never where it redirects
                if let token, url.origin == origin.origin { headers.append(HTTPField("Authorization", "Bearer " + token)) }
                do { exchange = try client.open(HTTPRequest("GET", url, headers: headers), deadline: deadline) } catch {
                    throw Self.netError(error)
                }
                let status = exchange.head.status
                guard [301, 302, 303, 307, 308].contains(status) else { break }
                guard let location = exchange.head.header("location"), redirects < Self.maxRedirects else {
                    throw .registry("\(path): a redirect without a Location, or too many redirects")
                }
                do { url = try url.resolving(location) } catch { throw Self.netError(error) }
                if origin.tls && !url.tls { throw .registry("\(path): redirected from https to http") }
                redirects += 1
            }
            switch exchange.head.status {
            case 200:
                return (exchange, try read(exchange))
            case 401 where !triedToken:
                triedToken = true
                token = try fetchToken(challenge: exchange.head.header("www-authenticate"), deadline: deadline)
            case 401, 403:
                throw .registry("\(reference): access denied (HTTP \(exchange.head.status); private images are not supported)")
            case 404:
                throw .imageNotFound(reference.description)
            default:
                let body = (try? exchange.readBody(limit: 4096)).map { String(decoding: $0, as: UTF8.self) } ?? ""
                throw .registry("\(reference): HTTP \(exchange.head.status) for \(path)" + (body.isEmpty ? "" : ": \(Names.clip(body))"))
            }
        }
    }

    /// Finds out whether an unverified registry speaks TLS: an HTTPS request
    /// to `/v2/` that fails in the handshake or gets no HTTP answer means HTTP.
    private mutating func probe(deadline: Deadline) throws(AppError) {
        probed = true
        do {
            _ = try client.open(HTTPRequest("GET", HTTPURL(tls: true, host: hostOnly, port: port, target: "/v2/")), deadline: deadline)
            tls = true
        } catch {
            switch error {
            case .tls, .connectionLost, .noAnswer, .badStatusLine, .malformedHead: tls = false
            default: throw Self.netError(error)
            }
        }
    }

    /// An anonymous token from the realm a `Bearer` challenge names.
    private func fetchToken(challenge: String?, deadline: Deadline) throws(AppError) -> String {
        guard let challenge, let params = Self.bearerChallenge(challenge), let realm = params["realm"] else {
            throw .registry("\(reference): access denied, and no bearer token challenge to answer")
        }
        var query: [String] = []
        if let service = params["service"] { query.append("service=" + Self.percentEncoded(service)) }
        query.append("scope=" + Self.percentEncoded(params["scope"] ?? "repository:\(reference.repository):pull"))
        var url: HTTPURL
        do { url = try HTTPURL(parsing: realm) } catch { throw .registry("token realm '\(Names.clip(realm))': \(error)") }
        if verified && !url.tls { throw .registry("token realm '\(Names.clip(realm))' is not https") }
        url.target += (url.target.contains("?") ? "&" : "?") + query.joined(separator: "&")
        let answer: HTTPResponse
        do {
            let c = HTTPClient(trust: client.trust, timeout: client.timeout, redirects: Self.maxRedirects)
            answer = try c.fetch(HTTPRequest("GET", url), deadline: deadline, maxBody: 1 << 20)
        } catch { throw Self.netError(error) }
        guard answer.status == 200 else { throw .registry("token from \(url.origin): HTTP \(answer.status)") }
        guard let json = try? JSONValue.parse(answer.body),
              let token = json["token"]?.stringValue ?? json["access_token"]?.stringValue, !token.isEmpty,
              token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .registry("token from \(url.origin): no usable token in the answer")
        }
        return token
    }

    /// The parameters of a `Bearer k="v",k2="v2"` challenge; nil for another scheme.
    static func bearerChallenge(_ header: String) -> [String: String]? {
        let trimmed = header.trimmingSpaces
        guard trimmed.lowercased().hasPrefix("bearer ") else { return nil }
        var out: [String: String] = [:]
        var rest = Substring(trimmed.dropFirst(7))
        while true {
            while rest.first == " " || rest.first == "," { rest = rest.dropFirst() }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = String(rest[..<eq]).trimmingSpaces.lowercased()
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                while let c = rest.first, c != "\"" {
                    if c == "\\", rest.count > 1 { rest = rest.dropFirst() }
                    value.append(rest.first!)
                    rest = rest.dropFirst()
                }
                rest = rest.dropFirst()
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = String(rest[..<end]).trimmingSpaces
                rest = rest[end...]
            }
            out[key] = value
        }
        return out
    }

    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e {
                out.append(Character(Unicode.Scalar(b)))
            } else {
                let hex = Array("0123456789ABCDEF")
                out += "%" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 15)])
            }
        }
        return out
    }

    static func netError(_ e: NetError) -> AppError { .network("\(e)") }

    private var hostOnly: String {
        let r = reference.apiHost
        if r.hasPrefix("[") { return String(r.dropFirst().prefix(while: { $0 != "]" })) }
        return String(r.prefix(while: { $0 != ":" }))
    }

    private var port: Int {
        let r = reference.apiHost
        let afterHost = r.hasPrefix("[") ? r.drop(while: { $0 != "]" }).dropFirst() : Substring(r).drop(while: { $0 != ":" })
        if afterHost.hasPrefix(":"), let p = Int(afterHost.dropFirst()) { return p }
        return tls ? 443 : 80
    }
}
