#if canImport(Glibc)
import Glibc
#endif
import CDisks

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

extension Mount {
    /// The mount that holds `path` (the longest mount point it is under).
    public static func containing(_ path: String, table: [Entry] = Mount.table()) -> Entry? {
        table.filter { path == $0.target || path.hasPrefix($0.target == "/" ? "/" : $0.target + "/") }
            .max { $0.target.count < $1.target.count }
    }

    /// Whether `path` lives in memory (tmpfs, ramfs, the initramfs).
    public static func isVolatile(_ path: String) -> Bool {
        guard let m = containing(path) else { return true }
        return ["tmpfs", "ramfs", "rootfs"].contains(m.type)
    }

    /// Runs `body` with the filesystem holding `path` writable: a
    /// read-only mount is remounted read-write for the call and read-only
    /// again after it, whatever `body` does.
    public static func withWritable<T>(_ path: String, _ body: () throws -> T) throws -> T {
        guard let m = containing(path), m.options.split(separator: ",").contains("ro") else { return try body() }
        let flags = UInt(MS_REMOUNT | MS_NOSUID | MS_NODEV)
        try syscall("remount \(m.target) read-write") { Glibc.mount(m.source, m.target, m.type, flags, nil) }
        defer {
            sync()
            _ = Glibc.mount(m.source, m.target, m.type, flags | UInt(MS_RDONLY), nil)
        }
        return try body()
    }
}

extension Mount {
    /// Mounts a file or block device through a read-only loop device made
    /// for it (autoclear: it goes when unmounted); the loop device's path.
    @discardableResult
    public static func throughLoop(_ source: String, on target: String, type: String, flags: UInt) throws -> String {
        var dev = [CChar](repeating: 0, count: 64)
        var fd: Int32 = -1
        let rc = cb_loop_attach(source, &dev, dev.count, &fd)
        guard rc == 0 else { throw SystemError("attach \(source) to a loop device", errno: rc) }
        // the device is detached when it is unmounted and this is closed
        defer { close(fd) }
        let loop = String(nulTerminated: dev)
        try mount(loop, on: target, type: type, flags: flags)
        return loop
    }
}
