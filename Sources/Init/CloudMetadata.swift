import Platform
#if canImport(Glibc)
import Glibc
#endif

/// One place a cloud serves an instance's user-data: its URL, the headers
/// its metadata service insists on, and how the body is encoded.
public struct MetadataSource: Sendable {
    /// How the source is named in the log ("EC2 (IMDSv2)").
    public var name: String
    public var url: String
    public var headers: [HTTPField]
    /// IMDSv2: a session token is asked for first (`PUT` to this URL) and
    /// sent with the request; without one (the service answers the `PUT`
    /// with an error) the request goes out as IMDSv1, without a token.
    public var tokenURL: String?
    /// Azure serves user-data base64-encoded.
    public var base64: Bool

    public init(name: String, url: String, headers: [HTTPField] = [], tokenURL: String? = nil, base64: Bool = false) {
        self.name = name; self.url = url; self.headers = headers; self.tokenURL = tokenURL; self.base64 = base64
    }

    /// The link-local metadata address EC2, OpenStack, GCE and Azure share.
    public static let linkLocal = "http://169.254.169.254"

    /// The user-data sources in the order they are tried; `base` replaces
    /// the link-local address (tests), `gceHost` GCE's metadata name.
    public static func all(base: String = linkLocal, gceHost: String? = "http://metadata.google.internal") -> [MetadataSource] {
        let gcePath = "/computeMetadata/v1/instance/attributes/user-data"
        var out = [
            MetadataSource(name: "EC2", url: base + "/latest/user-data", tokenURL: base + "/latest/api/token"),
            MetadataSource(name: "OpenStack", url: base + "/openstack/latest/user_data"),
            MetadataSource(name: "GCE", url: base + gcePath, headers: [HTTPField("Metadata-Flavor", "Google")]),
            MetadataSource(name: "Azure", url: base + "/metadata/instance/compute/userData?api-version=2021-01-01&format=text",
                           headers: [HTTPField("Metadata", "true")], base64: true),
        ]
        if let gceHost { out.append(MetadataSource(name: "GCE", url: gceHost + gcePath, headers: [HTTPField("Metadata-Flavor", "Google")])) }
        return out
    }
}

/// `cloudbios.config=metadata`: cloudbios.yaml is the instance's user-data,
/// read from the first cloud metadata service that has some. Each source
/// is tried with a short timeout and logged; a source that answers without
/// user-data (404, empty) is not this cloud's, and the next one is tried.
/// A machine outside a cloud gives up after one round: once an address and
/// port accepts no connection (refused, unreachable, no name, connect timed
/// out), the other sources there are not tried that round, and when no
/// source accepted a connection at all there is no service to wait for.
/// Only while some service accepted a connection without answering (it
/// may be starting) is the round repeated, for `window` seconds. Before the
/// first round the kernel must have a route to the link-local address (DHCP
/// may still be coming up): that is waited for, for `window` seconds.
public struct MetadataFetch: Sendable {
    public var sources: [MetadataSource] = MetadataSource.all()
    /// How long rounds are repeated while a service accepts connections
    /// but does not answer.
    public var window: Double = 30
    /// Longest wait for a connect, a read or a write.
    public var timeout: Double = 2
    /// Longest one request may take.
    public var attempt: Double = 4
    /// Pause between rounds.
    public var pause: Double = 2

    /// The kernel's IPv4 routes (`/proc/net/route`).
    public var routeTable: @Sendable () -> String? = { try? Files.readString("/proc/net/route") }

    public init() {}

    /// Writes the first user-data found to `dest` (atomically): nil when
    /// done (`found` then names its source), else why there is none.
    public func fetch(to dest: String, log: (String) -> Void) -> (error: String?, found: String?) {
        let client = HTTPClient(trust: .environment, timeout: timeout, redirects: 0)
        let deadline = Deadline.after(window)
        if let why = waitForRoutes(until: deadline, log: log) { return (why, nil) }
        var round = 1
        while true {
            var answered = false, accepted = false
            // address:port → why it accepted no connection, this round
            var closed: [String: String] = [:]
            for s in sources {
                let label = "\(s.name) \(s.url)"
                let endpoint = Self.endpoint(s.url)
                if let endpoint, let why = closed[endpoint] {
                    log("config: metadata: \(label): not tried: \(endpoint) accepted no connection (\(why))")
                    continue
                }
                switch get(s, client: client, log: log) {
                case .data(let body):
                    do { try Files.writeAtomically(dest, body, mode: 0o600) } catch { return ("cannot write \(dest): \(error)", nil) }
                    log("config: metadata: \(label): user-data found (\(body.count) bytes)")
                    return (nil, label)
                case .none(let why):
                    answered = true
                    log("config: metadata: \(label): \(why)")
                case .noAnswer(let why):
                    accepted = true
                    log("config: metadata: \(label): \(why)")
                case .noConnection(let why):
                    if let endpoint { closed[endpoint] = why }
                    log("config: metadata: \(label): \(why)")
                }
            }
            if answered { return ("no cloud metadata service has user-data for this instance", nil) }
            if !accepted {
                return ("no cloud metadata service accepted a connection (\(sources.count) sources; not in a cloud, or no route to its metadata service)", nil)
            }
            if deadline.remaining < pause {
                return ("no cloud metadata service answered in \(Int(window)) s (\(round) rounds of \(sources.count) sources)", nil)
            }
            round += 1
            usleep(UInt32(pause * 1e6))
        }
    }

    /// Waits until every routable IPv4 address the sources name (the
    /// link-local one; not loopback) has a route; nil when they do.
    func waitForRoutes(until deadline: Deadline, log: (String) -> Void) -> String? {
        let addresses = Set(sources.compactMap { (try? HTTPURL(parsing: $0.url))?.host }.filter {
            Self.ipv4($0).map { $0 & 0xFF != 127 } ?? false
        }).sorted()
        guard !addresses.isEmpty else { return nil }
        var logged = false
        while true {
            let table = routeTable() ?? ""
            let missing = addresses.filter { !Self.hasRoute(to: $0, in: table) }
            if missing.isEmpty { return nil }
            if deadline.hasPassed {
                return "no route to \(missing.joined(separator: ", ")) after \(Int(window)) s (no network: no DHCP lease?)"
            }
            if !logged { log("config: metadata: waiting for a route to \(missing.joined(separator: ", ")) (the network is coming up)"); logged = true }
            usleep(250_000)
        }
    }

    /// An IPv4 address as /proc/net/route prints it (network byte order
    /// read as a little-endian number).
    static func ipv4(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for (i, p) in parts.enumerated() {
            guard p.count <= 3, let b = UInt8(p) else { return nil }
            v |= UInt32(b) << (8 * UInt32(i))
        }
        return v
    }

    /// Whether a route that is up (a default route or one whose network
    /// holds it) reaches `address`, in the text of /proc/net/route.
    static func hasRoute(to address: String, in table: String) -> Bool {
        guard let a = ipv4(address) else { return false }
        for line in table.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 8, let dest = UInt32(f[1], radix: 16), let flags = UInt32(f[3], radix: 16),
                  let mask = UInt32(f[7], radix: 16) else { continue }
            if flags & 1 != 0, a & mask == dest { return true }
        }
        return false
    }

    /// `host:port` of a source's URL (nil when it does not parse).
    static func endpoint(_ url: String) -> String? {
        (try? HTTPURL(parsing: url)).map { "\($0.host):\($0.port)" }
    }

    enum Outcome: Equatable {
        /// The user-data, decoded.
        case data([UInt8])
        /// The service answered: this source has none.
        case none(String)
        /// Nothing accepted a connection (refused, unreachable, connect
        /// timed out, no such name).
        case noConnection(String)
        /// A connection was accepted but no answer came (timeout, closed).
        case noAnswer(String)
    }

    func get(_ s: MetadataSource, client: HTTPClient, log: (String) -> Void) -> Outcome {
        let url: HTTPURL
        do { url = try HTTPURL(parsing: s.url) } catch { return .none("bad URL: \(error)") }
        guard !url.tls else { return .none("only http:// is used for metadata") }
        var headers = s.headers
        if let t = s.tokenURL, let tokenURL = try? HTTPURL(parsing: t) {
            do throws(NetError) {
                let r = try client.fetch(HTTPRequest("PUT", tokenURL, headers: [HTTPField("X-aws-ec2-metadata-token-ttl-seconds", "300")]),
                                         deadline: .after(attempt), maxBody: 4096)
                let token = String(decoding: r.body, as: UTF8.self).filter { !$0.isWhitespace }
                if r.status == 200, !token.isEmpty, token.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) {
                    headers.append(HTTPField("X-aws-ec2-metadata-token", token))
                    log("config: metadata: \(s.name): IMDSv2 token received")
                } else {
                    log("config: metadata: \(s.name): no IMDSv2 token (HTTP \(r.status)); trying IMDSv1")
                }
            } catch {
                return Self.unreachable(error)
            }
        }
        do throws(NetError) {
            let r = try client.fetch(HTTPRequest("GET", url, headers: headers), deadline: .after(attempt), maxBody: ConfigFetch.maxSize)
            guard r.status == 200 else { return .none("HTTP \(r.status)" + (r.head.reason.isEmpty ? "" : " \(r.head.reason)")) }
            var body = r.body
            if s.base64 {
                guard let decoded = Self.base64Decode(body) else { return .none("user-data is not valid base64") }
                body = decoded
            }
            if body.allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) { return .none("empty user-data") }
            return .data(body)
        } catch {
            return Self.unreachable(error)
        }
    }

    /// Why a request got no HTTP answer, by whether anything listened.
    static func unreachable(_ e: NetError) -> Outcome {
        switch e {
        case .connect, .resolve: return .noConnection(describe(e))
        default: return .noAnswer(describe(e))
        }
    }

    static func describe(_ e: NetError) -> String {
        switch e {
        case .connect, .timedOut, .deadline, .noAnswer, .connectionLost, .resolve: return "no answer (\(e))"
        default: return "\(e)"
        }
    }

    /// Standard base64 (RFC 4648, padding optional, whitespace ignored);
    /// nil when the text is not base64.
    public static func base64Decode(_ text: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var acc: UInt32 = 0, bits = 0, padding = 0
        for c in text {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="): padding += 1; continue
            case 9, 10, 13, 32: continue
            default: return nil
            }
            if padding > 0 { return nil }  // data after padding
            acc = (acc << 6) | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        // leftover bits must be fewer than a byte and zero-free of data
        if bits >= 6 || padding > 2 { return nil }
        return out
    }
}
