import Testing
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

/// Backups' file checksum: XXH3-128 as xxHash's own tool prints it.
@Suite struct XXH128Tests {
    @Test func knownValuesAndFilesAsTheirBytes() throws {
        // `xxhsum -H2` of the empty input and of "abc" (XXH3-128, canonical big-endian hex)
        #expect(xxh128([]) == "99aa06d3014798d86001c324468d497f")
        #expect(xxh128(Array("abc".utf8)) == "06b05ab6733a618578af5f94892f3950")
        var t = Array("/tmp/cb-xxh-XXXXXX".utf8CString)
        let dir = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { Files.removeTree(dir) }
        // larger than one read (4 MiB): the streamed hash is the one of the whole
        var bytes = [UInt8](repeating: 0, count: (9 << 20) + 12345)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        try Files.writeAtomically("\(dir)/f", bytes)
        #expect(try xxh128File("\(dir)/f") == xxh128(bytes))
        bytes[bytes.count - 1] ^= 1
        #expect(try xxh128File("\(dir)/f") != xxh128(bytes))
        #expect(throws: (any Error).self) { try xxh128File("\(dir)/missing") }
    }
}
