import Testing
@testable import Panel

/// Sessions are known by the SHA-256 of their token: as 32 bytes in memory,
/// as 64 lowercase hex digits on disk.
@Suite struct TokenDigestTests {
    @Test func aDigestIsTheTokensSHA256AndReadsBackFromItsHex() {
        for token in ["", "a", String(repeating: "f", count: 64), Random.token(), Random.token()] {
            let d = TokenDigest(token: token)
            #expect(d.hex == hex(sha256(Array(token.utf8))))
            #expect(TokenDigest(hex: d.hex) == d)
            #expect(SessionStore.key(token) == d.hex)
        }
        // the SHA-256 of "abc" (FIPS 180-2)
        #expect(TokenDigest(token: "abc").hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(TokenDigest(token: "a") != TokenDigest(token: "b"))
        for bad in ["", "ab", String(repeating: "g", count: 64), String(repeating: "A", count: 64), String(repeating: "a", count: 65)] {
            #expect(TokenDigest(hex: bad) == nil)
        }
    }

    @Test func hexWritesEachByteAsTwoDigits() {
        #expect(hex([]) == "")
        #expect(hex([0x00, 0x0f, 0xab, 0xff]) == "000fabff")
        #expect(hex([0x00, 0xab, 0xff], uppercase: true, separator: ":") == "00:AB:FF")
    }
}
