import Testing
@testable import Panel

@Suite struct WebSocketTests {
    @Test func acceptKeyFromRFC6455() {
        #expect(WebSocket.acceptKey("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func base64() {
        #expect(WebSocket.base64(Array("".utf8)) == "")
        #expect(WebSocket.base64(Array("f".utf8)) == "Zg==")
        #expect(WebSocket.base64(Array("fo".utf8)) == "Zm8=")
        #expect(WebSocket.base64(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(WebSocket.base64DecodedLength("dGhlIHNhbXBsZSBub25jZQ==") == 16)
        #expect(WebSocket.base64DecodedLength("not base64!") == nil)
    }

    @Test(arguments: [0, 1, 125, 126, 127, 65535, 65536, 200_000])
    func roundTripMasked(_ n: Int) throws {
        let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let wire = WebSocket.encode(.init(opcode: .binary, payload: payload), mask: [1, 2, 3, 4])
        var d = WebSocket.Decoder()
        // Byte-at-a-time for small frames, in two halves for big ones.
        if n < 300 {
            for b in wire {
                d.append([b])
                if let f = try d.next() { #expect(f.payload == payload && f.opcode == .binary && f.fin); return }
            }
            Issue.record("no frame")
        } else {
            d.append(Array(wire[0..<wire.count / 2]))
            #expect(try d.next() == nil)
            d.append(Array(wire[(wire.count / 2)...]))
            #expect(try d.next()?.payload == payload)
        }
    }

    @Test func serverFramesAreUnmasked() {
        #expect(WebSocket.encode(.init(opcode: .binary, payload: [1, 2, 3])) == [0x82, 3, 1, 2, 3])
        #expect(WebSocket.encode(.init(opcode: .close, payload: WebSocket.closePayload(1000))) == [0x88, 2, 0x03, 0xe8])
        let big = WebSocket.encode(.init(opcode: .binary, payload: [UInt8](repeating: 0, count: 300)))
        #expect(Array(big[0..<4]) == [0x82, 126, 0x01, 0x2c])
    }

    @Test func fragmentationAndControlFrames() throws {
        var d = WebSocket.Decoder()
        let m: [UInt8] = [9, 8, 7, 6]
        d.append(WebSocket.encode(.init(fin: false, opcode: .binary, payload: [1]), mask: m))
        d.append(WebSocket.encode(.init(opcode: .ping, payload: [42]), mask: m))
        d.append(WebSocket.encode(.init(fin: true, opcode: .continuation, payload: [2]), mask: m))
        #expect(try d.next() == .init(fin: false, opcode: .binary, payload: [1]))
        #expect(try d.next() == .init(opcode: .ping, payload: [42]))
        #expect(try d.next() == .init(fin: true, opcode: .continuation, payload: [2]))
        #expect(try d.next() == nil)
    }

    @Test func protocolErrors() {
        func fails(_ bytes: [UInt8], _ code: UInt16) {
            var d = WebSocket.Decoder(maxPayload: 1000)
            d.append(bytes)
            #expect(throws: WebSocket.ProtocolError.self) { _ = try d.next() }
            do { _ = try d.next() } catch { #expect(error.code == code) }
        }
        fails([0x82, 0x01, 0x00], 1002)                                   // unmasked client frame
        fails([0xC2, 0x80, 0, 0, 0, 0], 1002)                             // RSV1 set
        fails([0x83, 0x80, 0, 0, 0, 0], 1002)                             // unknown opcode
        fails([0x09, 0x80, 0, 0, 0, 0], 1002)                             // fragmented ping
        fails([0x80, 0x80, 0, 0, 0, 0], 1002)                             // continuation without start
        fails([0x82, 0xFE, 0xFF, 0xFF, 0, 0, 0, 0], 1009)                 // too large
        fails([0x89, 0xFE, 0, 200, 0, 0, 0, 0], 1002)                     // control frame > 125
    }
}
