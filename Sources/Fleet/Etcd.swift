import Config
import Platform

/// etcd's v3 API through its gRPC gateway (JSON over HTTPS, `/v3/…` in etcd
/// 3.4): keys and values go as base64, 64-bit numbers as strings. One
/// request per call, each bounded by the client's timeout; errors say which
/// call failed and what etcd answered.
public struct EtcdClient: Sendable {
    /// `https://127.0.0.1:2379`: the node's own member.
    public var endpoint: HTTPURL
    public var http: HTTPClient
    /// Whole-call bound, in seconds.
    public var callTimeout: Double

    public init(endpoint: HTTPURL, trust: TLSTrust, timeout: Double = 5) {
        self.endpoint = endpoint
        http = HTTPClient(trust: trust, timeout: timeout, userAgent: "cloudbios-fleet")
        callTimeout = timeout
    }

    /// One stored key.
    public struct KeyValue: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]
        public var createRevision: Int64
        public var modRevision: Int64
        public var version: Int64
        /// The lease it lives under (0: none).
        public var lease: Int64
        public var string: String { String(decoding: value, as: UTF8.self) }
    }

    /// A condition of a transaction.
    public enum Compare: Sendable, Equatable {
        /// The key does not exist.
        case absent(String)
        /// The key was last written at this revision.
        case modRevision(String, Int64)
        /// The key holds exactly this value.
        case value(String, [UInt8])
    }

    /// An operation of a transaction.
    public enum Operation: Sendable, Equatable {
        case put(String, [UInt8], lease: Int64)
        case delete(String)
        case get(String)
    }

    /// What a transaction did: whether its conditions held, and the keys
    /// its `get`s read.
    public struct TxnResult: Sendable, Equatable {
        public var succeeded: Bool
        public var revision: Int64
        public var read: [KeyValue]
    }

    /// One member of the etcd cluster.
    public struct Member: Sendable, Equatable {
        public var id: UInt64
        public var name: String
        public var peerURLs: [String]
        public var clientURLs: [String]
    }

    // MARK: keys

    /// The key, nil when absent.
    public func get(_ key: String) throws(FleetError) -> KeyValue? {
        try range(["key": .string(Base64.encode(key))]).first
    }

    /// Every key starting with `prefix`, in key order.
    public func list(prefix: String) throws(FleetError) -> [KeyValue] {
        try range(["key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(Self.prefixEnd(prefix)))])
    }

    /// Writes the key (under `lease` when non-zero); the new revision.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(FleetError) -> Int64 {
        var body: [String: JSONValue] = ["key": .string(Base64.encode(key)), "value": .string(Base64.encode(value))]
        if lease != 0 { body["lease"] = .string(String(lease)) }
        let r = try call("/v3/kv/put", .object(body))
        return Self.int64(r["header"]?["revision"])
    }

    /// Deletes the key; how many were deleted.
    @discardableResult
    public func delete(_ key: String) throws(FleetError) -> Int {
        let r = try call("/v3/kv/deleterange", .object(["key": .string(Base64.encode(key))]))
        return Int(Self.int64(r["deleted"]))
    }

    /// Runs the operations of `success` when every comparison holds, else
    /// those of `failure`, atomically.
    public func txn(_ compare: [Compare], success: [Operation], failure: [Operation] = []) throws(FleetError) -> TxnResult {
        let cmp: [JSONValue] = compare.map { c in
            switch c {
            case .absent(let k):
                return .object(["key": .string(Base64.encode(k)), "target": .string("CREATE"), "result": .string("EQUAL"),
                                "create_revision": .string("0")])
            case .modRevision(let k, let rev):
                return .object(["key": .string(Base64.encode(k)), "target": .string("MOD"), "result": .string("EQUAL"),
                                "mod_revision": .string(String(rev))])
            case .value(let k, let v):
                return .object(["key": .string(Base64.encode(k)), "target": .string("VALUE"), "result": .string("EQUAL"),
                                "value": .string(Base64.encode(v))])
            }
        }
        func ops(_ list: [Operation]) -> [JSONValue] {
            list.map { op in
                switch op {
                case .put(let k, let v, let lease):
                    var p: [String: JSONValue] = ["key": .string(Base64.encode(k)), "value": .string(Base64.encode(v))]
                    if lease != 0 { p["lease"] = .string(String(lease)) }
                    return .object(["request_put": .object(p)])
                case .delete(let k): return .object(["request_delete_range": .object(["key": .string(Base64.encode(k))])])
                case .get(let k): return .object(["request_range": .object(["key": .string(Base64.encode(k))])])
                }
            }
        }
        let r = try call("/v3/kv/txn", .object(["compare": .array(cmp), "success": .array(ops(success)), "failure": .array(ops(failure))]))
        var read: [KeyValue] = []
        for resp in r["responses"]?.arrayValue ?? [] {
            for kv in resp["response_range"]?["kvs"]?.arrayValue ?? [] {
                if let v = try Self.keyValue(kv) { read.append(v) }
            }
        }
        return TxnResult(succeeded: r["succeeded"]?.boolValue ?? false, revision: Self.int64(r["header"]?["revision"]), read: read)
    }

    // MARK: leases

    /// A new lease of `ttl` seconds; its id.
    public func grantLease(ttl: Int) throws(FleetError) -> Int64 {
        let r = try call("/v3/lease/grant", .object(["TTL": .string(String(ttl))]))
        let id = Self.int64(r["ID"])
        guard id != 0 else { throw .etcd("lease grant", "no lease id in the answer") }
        return id
    }

    /// Renews the lease; the seconds it has left now (0: it had expired).
    public func keepAlive(_ id: Int64) throws(FleetError) -> Int {
        let r = try call("/v3/lease/keepalive", .object(["ID": .string(String(id))]))
        return Int(Self.int64(r["result"]?["TTL"]))
    }

    /// Ends the lease now: the keys under it go.
    public func revoke(_ id: Int64) throws(FleetError) {
        _ = try call("/v3/lease/revoke", .object(["ID": .string(String(id))]))
    }

    // MARK: members

    public func members() throws(FleetError) -> [Member] {
        let r = try call("/v3/cluster/member/list", .object([:]))
        return (r["members"]?.arrayValue ?? []).map(Self.member)
    }

    /// Adds a member that will start with these peer URLs; the members
    /// after the change (the new one without a name until it starts).
    public func addMember(peerURLs: [String]) throws(FleetError) -> (added: Member, members: [Member]) {
        let r = try call("/v3/cluster/member/add", .object(["peerURLs": .array(peerURLs.map(JSONValue.string))]))
        guard let m = r["member"] else { throw .etcd("member add", "no member in the answer") }
        return (Self.member(m), (r["members"]?.arrayValue ?? []).map(Self.member))
    }

    public func removeMember(_ id: UInt64) throws(FleetError) {
        _ = try call("/v3/cluster/member/remove", .object(["ID": .string(String(id))]))
    }

    // MARK: the wire

    private func range(_ body: [String: JSONValue]) throws(FleetError) -> [KeyValue] {
        let r = try call("/v3/kv/range", .object(body))
        var out: [KeyValue] = []
        for kv in r["kvs"]?.arrayValue ?? [] {
            if let v = try Self.keyValue(kv) { out.append(v) }
        }
        return out
    }

    /// POSTs `body` to `path`; the answer, or etcd's error as a `FleetError`.
    public func call(_ path: String, _ body: JSONValue) throws(FleetError) -> JSONValue {
        var url = endpoint
        url.target = path
        let request = HTTPRequest("POST", url, headers: [HTTPField("Content-Type", "application/json")], body: body.bytes)
        let response: HTTPResponse
        do { response = try http.fetch(request, deadline: .after(callTimeout), maxBody: 16 << 20) } catch {
            throw .unreachable("etcd at \(endpoint.hostHeader): \(error)")
        }
        let parsed = try? JSONValue.parse(response.body)
        if let e = parsed?["error"]?.stringValue ?? parsed?["message"]?.stringValue, response.status != 200 || parsed?["code"] != nil {
            throw .etcd(path, e)
        }
        guard response.status == 200, let parsed else {
            throw .etcd(path, "HTTP \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        return parsed
    }

    static func keyValue(_ kv: JSONValue) throws(FleetError) -> KeyValue? {
        guard let k = kv["key"]?.stringValue, let key = Base64.decode(k) else { throw .etcd("range", "a key that is not base64") }
        let value = kv["value"]?.stringValue.flatMap(Base64.decode) ?? []
        return KeyValue(key: String(decoding: key, as: UTF8.self), value: value,
                        createRevision: int64(kv["create_revision"]), modRevision: int64(kv["mod_revision"]),
                        version: int64(kv["version"]), lease: int64(kv["lease"]))
    }

    static func member(_ m: JSONValue) -> Member {
        Member(id: UInt64(m["ID"]?.stringValue ?? "") ?? UInt64(m["ID"]?.doubleValue ?? 0),
               name: m["name"]?.stringValue ?? "",
               peerURLs: (m["peerURLs"]?.arrayValue ?? []).compactMap(\.stringValue),
               clientURLs: (m["clientURLs"]?.arrayValue ?? []).compactMap(\.stringValue))
    }

    /// etcd writes 64-bit numbers as strings; absent is 0 (proto3).
    static func int64(_ v: JSONValue?) -> Int64 {
        if let s = v?.stringValue { return Int64(s) ?? 0 }
        return v?.int64Value ?? 0
    }

    /// The end of the range of keys starting with `prefix`: the prefix with
    /// its last byte below 0xff incremented.
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var b = Array(prefix.utf8)
        while let last = b.last {
            if last < 0xff { b[b.count - 1] = last + 1; return b }
            b.removeLast()
        }
        return [0]
    }
}

/// What goes wrong in the fleet: etcd unreachable or refusing, a
/// certificate that cannot be made, a node or member that is not there.
public enum FleetError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreachable(String)
    /// etcd answered an error to a call.
    case etcd(String, String)
    case certificate(String)
    case noSuchNode(String)
    case conflict(String)
    case notInFleet

    public var description: String {
        switch self {
        case .unreachable(let s): return "cannot reach \(s)"
        case .etcd(let call, let why): return "etcd \(call): \(why)"
        case .certificate(let s): return "fleet certificate: \(s)"
        case .noSuchNode(let n): return "no node '\(Names.clip(n))' in the fleet"
        case .conflict(let s): return s
        case .notInFleet: return "this node is in no fleet (cloudbios.yaml has no cluster: section)"
        }
    }
}

/// Base64 (RFC 4648, padded), as etcd's JSON carries keys and values.
public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ s: String) -> String { encode(Array(s.utf8)) }

    public static func encode(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((data.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= data.count {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let n = UInt32(data[i]) << 16
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes, nil when `s` is not padded base64.
    public static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 4 * 3)
        var i = 0
        while i < u.count {
            var n: UInt32 = 0
            var pad = 0
            for j in 0..<4 {
                let c = u[i + j]
                let v: UInt32
                switch c {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - 65)
                case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - 97 + 26)
                case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - 48 + 52)
                case UInt8(ascii: "+"): v = 62
                case UInt8(ascii: "/"): v = 63
                case UInt8(ascii: "=") where i + 4 == u.count && j >= 2: v = 0; pad += 1
                default: return nil
                }
                if pad > 0 && c != UInt8(ascii: "=") { return nil }
                n = n << 6 | v
            }
            out.append(UInt8(n >> 16))
            if pad < 2 { out.append(UInt8(n >> 8 & 0xff)) }
            if pad < 1 { out.append(UInt8(n & 0xff)) }
            i += 4
        }
        return out
    }
}

extension FleetError: DomainError {
    public var kind: ErrorKind {
        switch self {
        case .unreachable: return .unavailable
        case .etcd, .certificate: return .failed
        case .noSuchNode: return .notFound
        case .conflict, .notInFleet: return .conflict
        }
    }
}
