import Testing
@testable import Config

/// Image names are file names in the store: no `..` anywhere.
@Suite struct ImageNameTests {
    @Test func twoDotsInARowAreRefusedAnywhere() {
        for bad in ["a..b", "a..", "a...b", "x.y..z"] {
            #expect(Names.checkImage(bad) == "image name '\(bad)' must not contain '..'")
        }
        for good in ["a.b", "a.b.c", "debian-12.qcow2", "a._.b", "a."] { #expect(Names.checkImage(good) == nil) }
    }
}
