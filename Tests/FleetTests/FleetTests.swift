import Testing
import Config
@testable import Fleet
import Platform
#if canImport(Glibc)
import Glibc
#endif

@Suite struct Base64Tests {
    @Test func knownVectors() {
        let cases = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, coded) in cases {
            #expect(Base64.encode(plain) == coded)
            #expect(Base64.decode(coded) == Array(plain.utf8))
        }
    }

    @Test func everyByteRoundTrips() {
        let all = (0...255).map(UInt8.init)
        for n in 0..<6 {
            let b = Array(all.dropFirst(n))
            #expect(Base64.decode(Base64.encode(b)) == b)
        }
    }

    @Test func refusesWhatIsNotBase64() {
        for bad in ["Zg=", "Z===", "Zm9v!A==", "=Zm9", "Zg==Zg==", "Zm=v"] { #expect(Base64.decode(bad) == nil, "\(bad)") }
    }

    @Test func prefixEndIsTheNextKey() {
        #expect(EtcdClient.prefixEnd("a/") == Array("a0".utf8))
        #expect(EtcdClient.prefixEnd("a\u{7f}") == [UInt8(ascii: "a"), 0x80])
    }
}

@Suite struct FleetKeyTests {
    init() throws { try TLSLibraries.load() }

    /// RFC 4231, test cases 1 and 2.
    @Test func hmacVectors() {
        let key1 = [UInt8](repeating: 0x0b, count: 20)
        #expect(hex(hmacSHA256(key: key1, message: Array("Hi There".utf8))) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(hex(hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // a key longer than a block is hashed first (RFC 4231 case 6)
        let key6 = [UInt8](repeating: 0xaa, count: 131)
        #expect(hex(hmacSHA256(key: key6, message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func caSeedDependsOnTokenAndFleet() {
        let a = FleetPKI.caSeed(token: "0123456789abcdef", fleet: "lab")
        #expect(a == FleetPKI.caSeed(token: "0123456789abcdef", fleet: "lab"))
        #expect(a != FleetPKI.caSeed(token: "0123456789abcdeF", fleet: "lab"))
        #expect(a != FleetPKI.caSeed(token: "0123456789abcdef", fleet: "lab2"))
        #expect(a.count == 32)
    }

    /// Two nodes with the same token make CAs that each verify the other's
    /// leaf; a node with another token does not.
    @Test func certificatesOfTheSameTokenVerifyEachOther() throws {
        let dir = try tempDir()
        defer { Files.removeTree(dir) }
        let one = FleetPKI(directory: dir + "/one"), two = FleetPKI(directory: dir + "/two"), other = FleetPKI(directory: dir + "/other")
        try one.make(token: "a-token-of-16-chars", fleet: "lab", node: "node1", addresses: ["10.9.0.1"])
        try two.make(token: "a-token-of-16-chars", fleet: "lab", node: "node2", addresses: ["10.9.0.2"])
        try other.make(token: "another-token-16ch", fleet: "lab", node: "node3", addresses: ["10.9.0.3"])
        #expect(try Files.read(one.caKey) == Files.read(two.caKey))
        #expect(try verify(ca: one.caCert, leaf: two.nodeCert))
        #expect(try verify(ca: two.caCert, leaf: one.nodeCert))
        #expect(try !verify(ca: one.caCert, leaf: other.nodeCert))
        #expect(try !verify(ca: other.caCert, leaf: one.nodeCert))
    }

    func verify(ca: String, leaf: String) throws -> Bool {
        try Launcher(Launcher.which("openssl")!, ["verify", "-CAfile", ca, leaf]).run().status == 0
    }
}

@Suite struct ClusterConfigTests {
    func load(_ cluster: String) throws(ConfigErrors) -> CloudBIOSConfig {
        try ConfigLoader.load(path: "/x/cloudbios.yaml", text: "version: 1\ncluster:\n" + cluster)
    }

    @Test func decodesTheSection() throws {
        let c = try load("  name: lab\n  node: node1\n  address: 10.0.0.11\n  members: [10.0.0.11, 10.0.0.12]\n  token: \"0123456789abcdef\"\n").cluster
        #expect(c == ClusterConfig(name: "lab", node: "node1", address: "10.0.0.11", members: ["10.0.0.11", "10.0.0.12"], token: "0123456789abcdef"))
    }

    @Test func refusesBadValues() {
        let bad = [
            ("  name: Lab\n  members: [10.0.0.1]\n  token: 0123456789abcdef\n", "cluster name"),
            ("  name: lab\n  members: [10.0.0.1]\n  token: short\n", "at least 16"),
            ("  name: lab\n  members: [10.0.0.1, 10.0.0.1]\n  token: 0123456789abcdef\n", "listed twice"),
            ("  name: lab\n  members: [\"10.0.0.1;x\"]\n  token: 0123456789abcdef\n", "IPv4"),
            ("  name: lab\n  node: \"../x\"\n  members: [10.0.0.1]\n  token: 0123456789abcdef\n", "node name"),
            ("  name: lab\n  address: \"a b\"\n  members: [10.0.0.1]\n  token: 0123456789abcdef\n", "IPv4"),
            ("  name: lab\n  token: 0123456789abcdef\n", "members"),
            ("  name: lab\n  members: [10.0.0.1]\n", "token"),
            ("  name: lab\n  members: [10.0.0.1]\n  token: 0123456789abcdef\n  extra: 1\n", "extra"),
        ]
        for (text, says) in bad {
            do {
                _ = try load(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description.contains(says), "\(error.description)")
            }
        }
    }
}

/// The etcd client against a real etcd member on loopback, started the way
/// the daemon starts it (TLS with the fleet's certificates).
@Suite(.serialized) struct EtcdClientTests {
    @Test func keysTransactionsLeasesAndMembers() throws {
        try TLSLibraries.load()
        let dir = try tempDir()
        defer { Files.removeTree(dir) }
        let pki = FleetPKI(directory: dir + "/tls")
        try pki.make(token: "unit-test-token-0123", fleet: "unit", node: "node1", addresses: ["127.0.0.1"])
        var s = EtcdMember.Settings(name: "127.0.0.1", address: "127.0.0.1", initialMembers: ["127.0.0.1"], clusterToken: "unit",
                                    dataDir: dir + "/etcd", logFile: dir + "/etcd.log", pki: pki)
        s.clientPort = freePort()
        s.peerPort = freePort()
        let member = try EtcdMember(s)
        try member.start()
        defer { member.stop() }
        #expect(member.waitReady(timeout: 30), "etcd did not answer: \((try? Files.readString(dir + "/etcd.log")) ?? "")")
        let etcd = member.client

        #expect(try etcd.get("/t/none") == nil)
        let rev = try etcd.put("/t/a", Array("one".utf8))
        #expect(rev > 0)
        try etcd.put("/t/b", [0, 255, 10])
        try etcd.put("/u/c", Array("other".utf8))
        #expect(try etcd.get("/t/a")?.string == "one")
        #expect(try etcd.get("/t/a")?.modRevision == rev)
        #expect(try etcd.list(prefix: "/t/").map(\.key) == ["/t/a", "/t/b"])
        #expect(try etcd.list(prefix: "/t/")[1].value == [0, 255, 10])

        // create-if-absent: once only
        let first = try etcd.txn([.absent("/t/owner")], success: [.put("/t/owner", Array("node1".utf8), lease: 0)], failure: [.get("/t/owner")])
        #expect(first.succeeded)
        let second = try etcd.txn([.absent("/t/owner")], success: [.put("/t/owner", Array("node2".utf8), lease: 0)], failure: [.get("/t/owner")])
        #expect(!second.succeeded)
        #expect(second.read.map(\.string) == ["node1"])
        // compare-and-swap on the revision: a stale revision loses
        let owner = try #require(try etcd.get("/t/owner"))
        #expect(try etcd.txn([.modRevision("/t/owner", owner.modRevision)], success: [.put("/t/owner", Array("node3".utf8), lease: 0)]).succeeded)
        #expect(try !etcd.txn([.modRevision("/t/owner", owner.modRevision)], success: [.put("/t/owner", Array("node4".utf8), lease: 0)]).succeeded)
        #expect(try etcd.txn([.value("/t/owner", Array("node3".utf8))], success: [.delete("/t/owner")]).succeeded)
        #expect(try etcd.get("/t/owner") == nil)
        #expect(try etcd.delete("/t/a") == 1)
        #expect(try etcd.delete("/t/a") == 0)

        // leases: a key lives while its lease is renewed, and goes with it
        let lease = try etcd.grantLease(ttl: 3)
        try etcd.put("/t/alive", Array("up".utf8), lease: lease)
        #expect(try etcd.get("/t/alive")?.lease == lease)
        #expect(try etcd.keepAlive(lease) >= 2)
        try etcd.revoke(lease)
        #expect(try etcd.get("/t/alive") == nil)
        let short = try etcd.grantLease(ttl: 2)
        try etcd.put("/t/gone", Array("up".utf8), lease: short)
        sleep(4)
        #expect(try etcd.get("/t/gone") == nil)
        // renewing an expired lease says so (0 s left, or not found)
        do {
            #expect(try etcd.keepAlive(short) <= 0)
        } catch {
            #expect(error.description.contains("lease not found"))
        }
        #expect(throws: FleetError.self) { try etcd.put("/t/x", [], lease: 12345) }

        let members = try etcd.members()
        #expect(members.count == 1)
        #expect(members.first?.name == "127.0.0.1")
        #expect(members.first?.peerURLs == ["https://127.0.0.1:\(s.peerPort)"])

        // the client refuses a server outside the fleet's trust
        let stranger = FleetPKI(directory: dir + "/stranger")
        try stranger.make(token: "another-token-01234", fleet: "unit", node: "x", addresses: ["127.0.0.1"])
        let wrong = EtcdClient(endpoint: etcd.endpoint, trust: .authorities(stranger.caCert))
        #expect(throws: FleetError.self) { try wrong.members() }
    }

    /// The member is restarted when it dies.
    @Test func memberIsRestarted() throws {
        try TLSLibraries.load()
        let dir = try tempDir()
        defer { Files.removeTree(dir) }
        let pki = FleetPKI(directory: dir + "/tls")
        try pki.make(token: "unit-test-token-0123", fleet: "unit", node: "node1", addresses: ["127.0.0.1"])
        var s = EtcdMember.Settings(name: "127.0.0.1", address: "127.0.0.1", initialMembers: ["127.0.0.1"], clusterToken: "unit",
                                    dataDir: dir + "/etcd", logFile: dir + "/etcd.log", pki: pki)
        s.clientPort = freePort()
        s.peerPort = freePort()
        let member = try EtcdMember(s)
        try member.start()
        defer { member.stop() }
        try #require(member.waitReady(timeout: 60))
        try member.client.put("/k", Array("kept".utf8))
        kill(member.currentPID, SIGKILL)
        usleep(300_000)
        try #require(member.waitReady(timeout: 60))
        #expect(try member.client.get("/k")?.string == "kept")
    }
}

func attempt<T>(_ body: () async throws(FleetError) -> T) async -> Result<T, FleetError> {
    do throws(FleetError) { return .success(try await body()) } catch { return .failure(error) }
}

func hex(_ b: [UInt8]) -> String { b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }

func tempDir() throws -> String {
    var t = Array("/tmp/cbfleet-XXXXXX".utf8CString)
    guard mkdtemp(&t) != nil else { throw SystemError("mkdtemp", errno: errno) }
    return String(cString: t)
}

func freePort() -> Int {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(s) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { a in
        a.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in bind(s, p, len) == 0 && getsockname(s, p, &len) == 0 }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// VM ownership through etcd transactions: two nodes claiming one VM at the
/// same moment, exactly one wins.
@Suite(.serialized) struct OwnershipTests {
    @Test func concurrentClaimsHaveOneWinner() async throws {
        try TLSLibraries.load()
        let dir = try tempDir()
        defer { Files.removeTree(dir) }
        let cluster = ClusterConfig(name: "unit", node: nil, address: nil, members: ["127.0.0.1"], token: "ownership-token-0123")
        let ports = (client: freePort(), peer: freePort())
        let cap: @Sendable () async -> NodeCapacity = { NodeCapacity(cpus: 1, memory: 1, memoryFree: 1, vms: 0) }
        let one = try Fleet(cluster: cluster, node: "node1", address: "127.0.0.1", directory: dir + "/one", ports: ports, capacity: cap)
        // a second node's view of the same etcd (its own certificates, the same token)
        let two = try Fleet(cluster: cluster, node: "node2", address: "127.0.0.1", directory: dir + "/two", ports: ports, capacity: cap)
        try one.start()
        defer { one.stop() }
        try #require(one.member.waitReady(timeout: 60), "etcd did not answer: \((try? Files.readString(one.member.settings.logFile)) ?? "")")
        for round in 0..<10 {
            let vm = "twin\(round)"
            async let a = attempt { () throws(FleetError) in try await one.claimAsync(vm) }
            async let b = attempt { () throws(FleetError) in try await two.claimAsync(vm) }
            let (ra, rb) = await (a, b)
            let wins = [ra, rb].filter { (try? $0.get()) == true }.count
            #expect(wins == 1, "round \(round): \(ra) \(rb)")
            let owner = try one.owner(vm)
            #expect(owner == ((try? ra.get()) == true ? "node1" : "node2"))
            let loser = owner == "node1" ? rb : ra
            if case .failure(let e) = loser { #expect(e.description.contains("belongs to node '\(owner!)'")) } else { Issue.record("both won") }
        }
        // claiming again is fine for the owner; releasing is the owner's alone
        #expect(try one.claim("solo") == true)
        #expect(try one.claim("solo") == false)
        try two.release("solo")
        #expect(try one.owner("solo") == "node1")
        try one.release("solo")
        #expect(try one.owner("solo") == nil)
        #expect(try two.claim("solo") == true)
    }
}

/// Where a VM goes without a `"node"`, and the node-to-node credential.
@Suite struct NodeAPITests {
    func node(_ name: String, free: Int, state: String = "up") -> NodeInfo {
        NodeInfo(name: name, address: "10.0.0.1", state: state, cpus: 2, memory: 4096, memoryFree: free, vms: 0)
    }

    @Test func placementTakesTheUpNodeWithTheMostFreeMemory() {
        #expect(placement([node("a", free: 100), node("b", free: 900), node("c", free: 500)]) == "b")
        // a node that is down is never chosen, however much memory it had
        #expect(placement([node("a", free: 100), node("b", free: 900, state: "down")]) == "a")
        // ties go to the first name
        #expect(placement([node("c", free: 500), node("a", free: 500), node("b", free: 100)]) == "a")
        #expect(placement([node("a", free: 900, state: "down")]) == nil)
        #expect(placement([]) == nil)
    }

    @Test func credentialIsBoundToTheTokenTheRequestAndTheTime() throws {
        let dir = try tempDir()
        defer { Files.removeTree(dir) }
        let cap: @Sendable () async -> NodeCapacity = { NodeCapacity(cpus: 1, memory: 1, memoryFree: 1, vms: 0) }
        func fleet(_ token: String, _ sub: String) throws -> Fleet {
            try Fleet(cluster: ClusterConfig(name: "unit", node: nil, address: nil, members: ["127.0.0.1"], token: token),
                      node: "node1", address: "127.0.0.1", directory: dir + "/" + sub, capacity: cap)
        }
        let one = try fleet("credential-token-0123", "one"), same = try fleet("credential-token-0123", "same")
        let other = try fleet("another-token-456789", "other")
        let now = 1_800_000_000.0
        let c = one.credential(user: "admin", method: "POST", target: "/api/v1/vms/a/start", now: now)
        #expect(same.verify(c, method: "POST", target: "/api/v1/vms/a/start", now: now + 5) == "admin")
        #expect(other.verify(c, method: "POST", target: "/api/v1/vms/a/start", now: now) == nil)
        #expect(same.verify(c, method: "POST", target: "/api/v1/vms/b/start", now: now) == nil)
        #expect(same.verify(c, method: "DELETE", target: "/api/v1/vms/a/start", now: now) == nil)
        #expect(same.verify(c, method: "POST", target: "/api/v1/vms/a/start", now: now + 120) == nil)
        // another user named with the same MAC
        let forged = c.split(separator: " ").enumerated().map { $0.offset == 1 ? "root" : String($0.element) }.joined(separator: " ")
        #expect(same.verify(forged, method: "POST", target: "/api/v1/vms/a/start", now: now) == nil)
        #expect(same.verify("node1 admin 1800000000 00", method: "POST", target: "/api/v1/vms/a/start", now: now) == nil)
        #expect(same.verify("garbage", method: "GET", target: "/", now: now) == nil)
    }
}
