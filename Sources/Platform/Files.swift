#if canImport(Glibc)
import Glibc
#endif

/// Small file helpers on raw file descriptors; no Foundation.
public enum Files {
    /// Reads a whole file. Throws for a missing file.
    public static func read(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
        let fd = try syscall("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = try buf.withUnsafeMutableBytes { p in
                try syscall("read \(path)") { Glibc.read(fd, p.baseAddress, p.count) }
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    public static func readString(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// Reads a file, or nil when it cannot be read (sysfs attributes).
    public static func readTrimmed(_ path: String) -> String? {
        guard let s = try? readString(path) else { return nil }
        var t = Substring(s)
        while let l = t.last, l == "\n" || l == " " || l == "\t" || l == "\r" { t.removeLast() }
        while let f = t.first, f == " " || f == "\t" { t.removeFirst() }
        return String(t)
    }

    /// Writes all bytes to a file descriptor.
    public static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>, what: String = "write") throws {
        // straight from the collection's storage when it has one (no copy)
        if try bytes.withContiguousStorageIfAvailable({ try writeAll(fd, UnsafeRawBufferPointer($0), what: what) }) != nil { return }
        try Array(bytes).withUnsafeBytes { try writeAll(fd, $0, what: what) }
    }

    /// Writes all bytes of a buffer to a file descriptor.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, what: String = "write") throws {
        var off = 0
        while off < bytes.count {
            off += try syscall(what) { Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off) }
        }
    }

    /// Atomically replaces `path`: write a temp file beside it, fsync, rename,
    /// fsync the directory. Readers see the old or the new file, never half.
    public static func writeAtomically(_ path: String, _ bytes: some Collection<UInt8>, mode: mode_t = 0o644) throws {
        let tmp = path + ".tmp.\(getpid())"
        let fd = try syscall("create \(tmp)") { open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
        do {
            try writeAll(fd, bytes, what: "write \(tmp)")
            try syscall("fsync \(tmp)") { fsync(fd) }
        } catch {
            close(fd); unlink(tmp); throw error
        }
        close(fd)
        try syscall("rename \(tmp)") { rename(tmp, path) }
        let dir = parent(of: path)
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// Removes what `writeAtomically` leaves in `dir` when its writer dies
    /// before the rename: `NAME.tmp.PID` whose PID no longer runs. Returns
    /// the names removed.
    @discardableResult
    public static func removeStaleTemporaries(in dir: String) -> [String] {
        var removed: [String] = []
        for name in list(dir) {
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 3, parts[parts.count - 2] == "tmp", let pid = pid_t(parts[parts.count - 1]), pid > 0 else { continue }
            if kill(pid, 0) == 0 || cb_errnoValue() == EPERM { continue }
            if unlink(dir + "/" + name) == 0 { removed.append(name) }
        }
        return removed
    }

    public static func writeAtomically(_ path: String, _ string: String, mode: mode_t = 0o644) throws {
        try writeAtomically(path, Array(string.utf8), mode: mode)
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// `mkdir -p`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if isDirectory(path) { return }
        let p = parent(of: path)
        if p != path && !p.isEmpty { try makeDirectories(p, mode: mode) }
        if mkdir(path, mode) != 0 && cb_errnoValue() != EEXIST {
            throw SystemError("mkdir \(path)", errno: cb_errnoValue())
        }
    }

    /// Entries of a directory (without . and ..), sorted; empty when unreadable.
    public static func list(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func remove(_ path: String) { unlink(path) }

    /// Copies a file's bytes to `to` (created or truncated, mode 0644).
    public static func copy(_ from: String, to: String) throws {
        let i = try syscall("open \(from)") { open(from, O_RDONLY | O_CLOEXEC) }
        defer { close(i) }
        let o = try syscall("create \(to)") { open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(o) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try buf.withUnsafeMutableBytes { p in try syscall("read \(from)") { Glibc.read(i, p.baseAddress, p.count) } }
            if n == 0 { break }
            try writeAll(o, buf[0..<n], what: "write \(to)")
        }
    }

    /// Removes a directory tree (no symlink following).
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for e in list(path) { removeTree(path + "/" + e) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    public static func parent(of path: String) -> String {
        guard let i = path.lastIndex(of: "/") else { return "." }
        if i == path.startIndex { return "/" }
        return String(path[..<i])
    }

    public static func size(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_size)
    }
}

@inline(__always) func cb_errnoValue() -> Int32 { currentErrno() }

extension Files {
    /// The target of a symbolic link, as stored.
    public static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
