import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// The tiny test guest (scripts/lib/make-guest.sh), built once per machine.
enum Guest {
    static let repoRoot: String = {
        var p = String(#filePath)
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p
    }()
    static let dir = "/tmp/cloudbios-test-guest"

    static func build() throws -> (kernel: String, initrd: String) {
        let r = try Launcher("/bin/sh", ["\(repoRoot)/scripts/lib/make-guest.sh", dir]).run()
        guard r.status == 0 else { throw TestError("make-guest.sh failed: \(r.output)") }
        return ("\(dir)/vmlinuz", "\(dir)/initrd.img")
    }

    /// A fresh, short state dir (socket paths must stay under 108 bytes).
    static func stateDir() -> String {
        var t = Array("/tmp/cbvm-XXXXXX".utf8CString)
        _ = t.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: t)
    }

    static func upload(_ m: VMManager, name: String, from path: String) async throws -> ImageInfo {
        let u = try await m.beginImageUpload(name, expectedSize: Files.size(path))
        let bytes = try Files.read(path)
        var off = 0
        while off < bytes.count {   // in chunks, as the HTTP layer does
            let end = min(off + 100_000, bytes.count)
            try bytes[off..<end].withUnsafeBytes { try u.write($0) }
            off = end
        }
        return try await u.finish()
    }

    static func tinySpec(_ name: String) -> VMSpec {
        var s = VMSpec(name: name)
        s.memory = 256
        s.kernel = "tiny-kernel"
        s.initrd = "tiny-initrd"
        s.append = "console=ttyS0 vga=0x344 quiet"
        s.network = .nat
        return s
    }

    /// Waits until `text` shows in the VM's serial log.
    static func waitForSerial(_ m: VMManager, _ vm: String, _ text: String, timeout: Double) async throws -> Bool {
        let path = try await m.serialLogPath(vm)
        let deadline = now() + timeout
        while now() < deadline {
            if let s = try? Files.readString(path), s.contains(text) { return true }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        return false
    }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Dominant colour share of a binary PPM (P6) image.
func ppmShare(_ b: [UInt8], r: UInt8, g: UInt8, bl: UInt8) -> (share: Double, width: Int, height: Int)? {
    // header: P6\nW H\nMAX\n
    var fields: [String] = []
    var i = 0
    var cur = ""
    while fields.count < 4 && i < b.count {
        let c = b[i]
        if c == 0x20 || c == 0x0a || c == 0x09 || c == 0x0d {
            if !cur.isEmpty { fields.append(cur); cur = "" }
        } else { cur.append(Character(UnicodeScalar(c))) }
        i += 1
    }
    guard fields.count == 4, fields[0] == "P6", let w = Int(fields[1]), let h = Int(fields[2]) else { return nil }
    let px = w * h
    guard b.count - i >= px * 3, px > 0 else { return nil }
    var match = 0
    var j = i
    for _ in 0..<px {
        if abs(Int(b[j]) - Int(r)) < 8 && abs(Int(b[j + 1]) - Int(g)) < 8 && abs(Int(b[j + 2]) - Int(bl)) < 8 { match += 1 }
        j += 3
    }
    return (Double(match) / Double(px), w, h)
}
