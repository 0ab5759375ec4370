#if canImport(Glibc)
import Glibc
#endif

/// mount(2) and umount(2), and the mount table.
public enum Mount {
    /// One line of /proc/mounts.
    public struct Entry: Equatable, Sendable {
        public var source: String
        public var target: String
        public var type: String
        public var options: String
        public init(source: String, target: String, type: String, options: String) {
            self.source = source; self.target = target; self.type = type; self.options = options
        }
    }

    /// Mounts `source` on `target` (created if missing).
    public static func mount(_ source: String, on target: String, type: String,
                             flags: UInt = 0, options: String = "") throws {
        try Files.makeDirectories(target)
        try syscall("mount \(source) on \(target) (\(type))") {
            Glibc.mount(source, target, type, flags, options.isEmpty ? nil : options)
        }
    }

    /// Unmounts; with `lazy`, detaches a busy mount.
    public static func unmount(_ target: String, lazy: Bool = false) throws {
        try syscall("umount \(target)") { umount2(target, lazy ? Int32(MNT_DETACH) : 0) }
    }

    /// Parses /proc/mounts text (octal escapes such as \040 decoded).
    public static func parseTable(_ text: String) -> [Entry] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count >= 4 else { return nil }
            return Entry(source: unescape(f[0]), target: unescape(f[1]), type: String(f[2]), options: String(f[3]))
        }
    }

    public static func table(_ path: String = "/proc/mounts") -> [Entry] {
        parseTable((try? Files.readString(path)) ?? "")
    }

    public static func isMounted(_ target: String) -> Bool {
        table().contains { $0.target == target }
    }

    static func unescape<S: StringProtocol>(_ s: S) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else {
                out.append(b[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
