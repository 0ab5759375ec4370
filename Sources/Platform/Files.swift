#if canImport(Glibc)
import Glibc
#endif

/// Small file helpers over `FileDescriptor`; no Foundation.
public enum Files {
    /// Reads a whole file. Throws for a missing file.
    public static func read(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        return try fd.readToEnd(limit: limit, what: "read \(path)")
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

    /// Writes all bytes to a raw file descriptor (`FileDescriptor.writeAll`).
    public static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>, what: String = "write") throws {
        try FileDescriptor(rawValue: fd).writeAll(bytes, what: what)
    }

    /// Writes all bytes of a buffer to a raw file descriptor.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, what: String = "write") throws {
        try FileDescriptor(rawValue: fd).writeAll(bytes, what: what)
    }

    /// Writes a /proc or /sys attribute in place: one write to the file
    /// itself, no temp file and rename there.
    public static func writeInPlace(_ path: String, _ value: String) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY)
        defer { fd.close() }
        try fd.writeAll(value.utf8, what: "write \(path)")
    }

    /// Atomically replaces `path`: write a temp file beside it, fsync, rename,
    /// fsync the directory. Readers see the old or the new file, never half.
    public static func writeAtomically(_ path: String, _ bytes: some Collection<UInt8>, mode: mode_t = 0o644) throws {
        let tmp = path + ".tmp.\(getpid())"
        let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: mode, what: "create \(tmp)")
        do {
            try fd.writeAll(bytes, what: "write \(tmp)")
            try fd.sync(what: "fsync \(tmp)")
        } catch {
            fd.close(); unlink(tmp); throw error
        }
        fd.close()
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
            if kill(pid, 0) == 0 || Errno.current == .permission { continue }
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
        if mkdir(path, mode) != 0 && Errno.current != .exists {
            throw SystemError.current("mkdir \(path)")
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
        let i = try FileDescriptor.open(from, O_RDONLY)
        defer { i.close() }
        let o = try FileDescriptor.open(to, O_WRONLY | O_CREAT | O_TRUNC, what: "create \(to)")
        defer { o.close() }
        try o.copy(from: i, what: ("read \(from)", "write \(to)"))
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

extension Files {
    /// The target of a symbolic link, as stored.
    public static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
