import Testing
import Config
import Platform
@testable import QEMU
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

@Suite struct QMPCodecTests {
    @Test func encodesCommandWithIdAndArguments() throws {
        let b = QMPCodec.encode(command: "screendump", arguments: .object(["filename": .string("/x"), "format": .string("png")]), id: 7)
        let text = String(decoding: b, as: UTF8.self)
        #expect(text.hasSuffix("\r\n"))
        let v = try JSONValue.parse(Array(b.dropLast(2)))
        #expect(v["execute"] == .string("screendump"))
        #expect(v["id"]?.intValue == 7)
        #expect(v["arguments"]?["format"] == .string("png"))
    }

    @Test func decodesEveryKind() throws {
        #expect(try QMPCodec.decode(Array(#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": []}}"#.utf8))
                    == .greeting(.object(["version": .object(["qemu": .object(["micro": .int(22), "minor": .int(2), "major": .int(7)])]), "capabilities": .array([])])))
        #expect(try QMPCodec.decode(Array(#"{"return": {}, "id": 3}"#.utf8)) == .reply(id: 3, .object([:])))
        #expect(try QMPCodec.decode(Array(#"{"id": 4, "error": {"class": "CommandNotFound", "desc": "nope"}}"#.utf8))
                    == .error(id: 4, QMPError(errorClass: "CommandNotFound", desc: "nope")))
        #expect(try QMPCodec.decode(Array(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#.utf8))
                    == .event(QMPEvent(name: "STOP")))
        #expect(throws: QEMUError.self) { try QMPCodec.decode(Array("[1]".utf8)) }
        #expect(throws: QEMUError.self) { try QMPCodec.decode(Array("{nope".utf8)) }
    }

    @Test func lineBufferSplitsAcrossChunks() throws {
        var lb = LineBuffer()
        #expect(try lb.feed(Array("{\"a\":".utf8)).isEmpty)
        let l = try lb.feed(Array("1}\r\n\r\n{\"b\":2}\n{\"c\"".utf8))
        #expect(l.map { String(decoding: $0, as: UTF8.self) } == ["{\"a\":1}", "{\"b\":2}"])
        #expect(try lb.feed(Array(":3}\n".utf8)).map { String(decoding: $0, as: UTF8.self) } == ["{\"c\":3}"])
    }

    /// A guest's agent sends what it likes: a prefix no Int holds (found by
    /// fuzz/targets/qmp.swift) leaves that address out instead of trapping.
    @Test func guestAddressWithAnImpossiblePrefixIsLeftOut() throws {
        for prefix in ["1e999", "-1e999", "1e300", "9223372036854775808", "24.5"] {
            let ifaces = try JSONValue.parse(Array("""
            [{"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"10.0.2.15","prefix":\(prefix)},
                                             {"ip-address-type":"ipv4","ip-address":"10.0.3.15","prefix":24}]}]
            """.utf8))
            #expect(GuestAgent.parseAddresses(ifaces.arrayValue ?? [])
                        == [GuestAddress(interface: "eth0", address: "10.0.3.15", prefix: 24, family: "ipv4", source: "agent")], "\(prefix)")
        }
    }
}

/// A fake QEMU on the other end of a socketpair.
final class FakePeer: @unchecked Sendable {
    let fd: Int32
    var buffer = LineBuffer()
    var queue: [[UInt8]] = []
    init(fd: Int32) { self.fd = fd }
    func send(_ s: String) { try! Files.writeAll(fd, Array((s + "\r\n").utf8)) }
    /// Reads the next command the client sent (blocking, 30 s max: a loaded
    /// machine may take seconds to run the client's next step).
    func receive() -> JSONValue? {
        var buf = [UInt8](repeating: 0, count: 4096)
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while queue.isEmpty {
            guard poll(&pfd, 1, 30_000) > 0 else { return nil }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return nil }
            queue += try! buffer.feed(buf[0..<n])
        }
        return try? JSONValue.parse(queue.removeFirst())
    }
    func close() { Glibc.close(fd) }
}

/// Runs blocking peer code on its own OS thread (not the small cooperative pool).
func onThread(_ body: @escaping @Sendable () -> Void) -> Task<Void, Never> {
    Task {
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            startThread { body(); k.resume() }
        }
    }
}

func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

@Suite struct QMPClientTests {
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#

    @Test func handshakeRepliesByIdEventsAndClose() async throws {
        let (a, b) = socketPair()
        let peer = FakePeer(fd: b)
        let events = Mutex<[String]>([])
        let closed = Mutex(false)
        let client = QMPClient(fd: a, onEvent: { e in events.withLock { $0.append(e.name) } },
                               onClose: { closed.withLock { $0 = true } })
        let peerTask = onThread {
            peer.send(Self.greeting)
            let caps = peer.receive()
            #expect(caps?["execute"] == .string("qmp_capabilities"))
            peer.send(#"{"return": {}, "id": \#(caps?["id"]?.intValue ?? -1)}"#)
            // two requests: answer them out of order, with an event in between
            let r1 = peer.receive(), r2 = peer.receive()
            #expect(r1?["execute"] == .string("query-status"))
            #expect(r2?["execute"] == .string("stop"))
            peer.send(#"{"return": {}, "id": \#(r2?["id"]?.intValue ?? -1)}"#)
            peer.send(#"{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}"#)
            peer.send(#"{"return": {"status": "paused", "running": false}, "id": \#(r1?["id"]?.intValue ?? -1)}"#)
            // an error reply
            let r3 = peer.receive()
            peer.send(#"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": \#(r3?["id"]?.intValue ?? -1)}"#)
        }
        try await client.handshake(timeout: 30)
        #expect(client.qemuVersion == "7.2.22")
        async let status = client.execute("query-status", timeout: 30)
        try await Task.sleep(nanoseconds: 50_000_000)
        async let stop = client.execute("stop", timeout: 30)
        let (s, st) = try await (status, stop)
        #expect(s["status"] == .string("paused"))
        #expect(st == .object([:]))
        await #expect(throws: QMPError.self) { try await client.execute("nope", timeout: 30) }
        await peerTask.value
        #expect(events.withLock { $0 } == ["STOP"])
        client.close()
        for _ in 0..<100 where !closed.withLock({ $0 }) { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(closed.withLock { $0 })
        await #expect(throws: QMPClientError.closed) { try await client.execute("query-status", timeout: 1) }
        peer.close()
    }

    @Test func requestTimesOutWhenPeerIsSilent() async throws {
        let (a, b) = socketPair()
        let peer = FakePeer(fd: b)
        let client = QMPClient(fd: a)
        peer.send(Self.greeting)
        let t = onThread { let c = peer.receive(); peer.send(#"{"return": {}, "id": \#(c?["id"]?.intValue ?? -1)}"#) }
        try await client.handshake(timeout: 5)
        await t.value
        let t0 = Clock.monotonic()
        await #expect(throws: QMPClientError.timeout("query-status")) { try await client.execute("query-status", timeout: 0.3) }
        #expect(Clock.monotonic() - t0 < 30)
        client.close()
        peer.close()
    }

    @Test func peerHangupFailsPendingRequests() async throws {
        let (a, b) = socketPair()
        let peer = FakePeer(fd: b)
        let client = QMPClient(fd: a)
        peer.send(Self.greeting)
        let t = onThread {
            let c = peer.receive(); peer.send(#"{"return": {}, "id": \#(c?["id"]?.intValue ?? -1)}"#)
            _ = peer.receive()   // the quit
            peer.close()         // QEMU exits without answering
        }
        try await client.handshake(timeout: 5)
        await #expect(throws: QMPClientError.closed) { try await client.execute("quit", timeout: 5) }
        await t.value
        #expect(client.isClosed)
    }

    @Test func connectFailsOnMissingSocketWithinTimeout() async {
        let t0 = Clock.monotonic()
        await #expect(throws: QMPClientError.self) { _ = try await QMPClient.connect(path: "/tmp/nonexistent-\(getpid()).sock", timeout: 0.3) }
        #expect(Clock.monotonic() - t0 < 30)   // gives up instead of hanging (generous: the test pool may be busy)
    }
}
