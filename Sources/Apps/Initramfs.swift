#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// The initramfs every app's microVM boots: `cloudbios-app-init` (static)
/// as `/app-init`, and the kernel modules (with their dependencies, uncompressed) the
/// guest needs for virtio-mmio disks, network and serial ports, erofs and
/// overlayfs, in load order in `/modules.order`. Built once per kernel and
/// binary (`STATE/apps/initramfs/KEY.cpio`, uncompressed newc: nothing to
/// inflate at boot) and shared by every app.
public enum AppInitramfs {
    // crc32c_generic: libcrc32c (erofs) asks the crypto API for crc32c, which
    // modprobe would load as its soft dependency
    public static let modules = ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "crc32c_generic", "erofs", "overlay"]

    /// The newest kernel with modules on this host: (version, vmlinuz).
    /// Without /boot/vmlinuz-VERSION for any of them, the running kernel's
    /// image from `elsewhere` (the PE: its boot medium's).
    public static func hostKernel(elsewhere: (String) -> String? = { _ in nil }) throws(AppError) -> (version: String, vmlinuz: String) {
        let versions = Files.list("/lib/modules").filter { Files.exists("/boot/vmlinuz-" + $0) }
            .sorted()
        if let v = versions.last { return (v, "/boot/vmlinuz-" + v) }
        var u = utsname()
        uname(&u)
        let running = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if Files.exists("/lib/modules/" + running), let image = elsewhere(running) { return (running, image) }
        throw .unavailable("no kernel: /boot/vmlinuz-VERSION with /lib/modules/VERSION (linux-image-amd64), nor the boot medium's")
    }

    /// The initramfs for `kernelVersion` and app-init's binary, built when missing.
    public static func ensure(cacheRoot: String, kernelVersion: String) throws(AppError) -> String {
        let binary = try AppInit.binary()
        var st = stat()
        guard stat(binary, &st) == 0 else { throw .unavailable("\(binary): \(String(cString: strerror(errno)))") }
        let key = hexSHA256(Array("\(kernelVersion)\n\(binary)\n\(st.st_size)\n\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)\n\(st.st_ino)\n\(modules)".utf8))
        let dir = cacheRoot + "/initramfs"
        let path = dir + "/" + key.prefix(32) + ".cpio"
        if Files.exists(path) { return path }
        do { try Files.makeDirectories(dir) } catch { throw .unavailable("\(dir): \(error)") }
        let partial = dir + "/.partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(partial) }
        try build(partial, binary: binary, kernelVersion: kernelVersion)
        guard rename(partial, path) == 0 else { throw .unavailable("keep \(path): \(String(cString: strerror(errno)))") }
        return path
    }

    static func build(_ output: String, binary: String, kernelVersion: String) throws(AppError) {
        let moduleDir = "/lib/modules/" + kernelVersion
        let order = try moduleOrder(moduleDir)
        do {
            var w = try CPIOWriter(output)
            defer { w.close() }
            for d in ["dev", "proc", "sys", "lower", "rw", "newroot", "lib", "lib/modules"] { try w.directory(d) }
            try w.file("app-init", from: binary, mode: 0o755)
            var dirs: Set<String> = ["lib", "lib/modules"]
            func parents(_ rel: String) throws {
                var prefix = ""
                for p in rel.split(separator: "/").dropLast() {
                    prefix += prefix.isEmpty ? String(p) : "/" + p
                    if dirs.insert(prefix).inserted { try w.directory(prefix) }
                }
            }
            var names: [String] = []
            for m in order {
                var rel = "lib/modules/" + m
                let source = moduleDir + "/" + m
                let bytes: [UInt8]
                if m.hasSuffix(".xz") || m.hasSuffix(".zst") {
                    let tool = m.hasSuffix(".xz") ? "xz" : "zstd"
                    guard let path = Launcher.which(tool) else { throw AppError.unavailable("\(tool) is needed to unpack \(m)") }
                    let out = try Launcher(path, ["-dc", source]).runBytes()
                    bytes = out
                    rel = String(rel[..<rel.lastIndex(of: ".")!])
                } else {
                    bytes = try Files.read(source, limit: 64 << 20)
                }
                try parents(rel)
                try w.file(rel, bytes: bytes, mode: 0o644)
                names.append(String(rel.dropFirst("lib/modules/".count)))
            }
            try w.file("modules.order", bytes: Array((names.joined(separator: "\n") + "\n").utf8), mode: 0o644)
            try w.finish()
        } catch let e as AppError {
            throw e
        } catch {
            throw .unavailable("build the app initramfs: \(error)")
        }
    }

    /// The modules to load, each after the ones it depends on (from modules.dep).
    static func moduleOrder(_ moduleDir: String) throws(AppError) -> [String] {
        let text: String
        do { text = try Files.readString(moduleDir + "/modules.dep") } catch { throw .unavailable("\(moduleDir)/modules.dep: \(error)") }
        var deps: [String: [String]] = [:]
        var byName: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            deps[path] = line[line.index(after: colon)...].split(separator: " ").map(String.init)
            var base = String(path.split(separator: "/").last ?? "")
            for ext in [".xz", ".zst", ".gz", ".ko"] where base.hasSuffix(ext) { base = String(base.dropLast(ext.count)) }
            byName[base.replacingDashes] = path
        }
        var order: [String] = []
        func add(_ path: String) {
            if order.contains(path) { return }
            // modules.dep lists a module's dependencies deepest last
            for d in (deps[path] ?? []).reversed() { add(d) }
            order.append(path)
        }
        for m in modules {
            guard let path = byName[m] else {
                // built into the kernel: nothing to load
                if Files.readTrimmed(moduleDir + "/modules.builtin").map({ $0.contains("/\(m).ko") }) ?? false { continue }
                throw .unavailable("kernel module \(m) not found under \(moduleDir)")
            }
            add(path)
        }
        return order
    }
}

extension String {
    var replacingDashes: String { String(map { $0 == "-" ? "_" : $0 }) }
}

extension Launcher {
    /// Runs to completion and returns its standard output as bytes.
    func runBytes() throws -> [UInt8] {
        let output = try FileDescriptor.pipe()
        let pid: pid_t
        do { pid = try spawn(stdout: output.write) } catch { output.read.close(); output.write.close(); throw error }
        output.write.close()
        let out = (try? output.read.readToEnd(what: "read the output of \(path)")) ?? []
        output.read.close()
        let status = Launcher.wait(pid)
        guard status == 0 else { throw AppError.unavailable("\(path) failed (status \(status))") }
        return out
    }
}

/// Writes a cpio archive in the "newc" format the kernel unpacks.
struct CPIOWriter {
    let fd: Int32
    var offset = 0
    var inode = 1

    init(_ path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError.current("create \(path)") }
    }

    func close() { _ = Glibc.close(fd) }

    mutating func directory(_ name: String) throws { try entry(name, mode: 0o040755, size: 0) }

    mutating func file(_ name: String, bytes: [UInt8], mode: UInt32) throws {
        try entry(name, mode: 0o100000 | mode, size: bytes.count)
        try put(bytes)
        try pad()
    }

    mutating func file(_ name: String, from path: String, mode: UInt32) throws {
        try file(name, bytes: try Files.read(path, limit: 512 << 20), mode: mode)
    }

    mutating func finish() throws {
        try entry("TRAILER!!!", mode: 0, size: 0, nlink: 1)
        guard fsync(fd) == 0 else { throw SystemError.current("fsync") }
    }

    private mutating func entry(_ name: String, mode: UInt32, size: Int, nlink: Int = 1) throws {
        func hex(_ v: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, 8 - s.count)) + s
        }
        let nameBytes = Array(name.utf8) + [0]
        var header = "070701" + hex(name == "TRAILER!!!" ? 0 : inode) + hex(Int(mode)) + hex(0) + hex(0) + hex(nlink)
        header += hex(0) + hex(size) + hex(0) + hex(0) + hex(0) + hex(0) + hex(nameBytes.count) + hex(0)
        inode += 1
        try put(Array(header.utf8) + nameBytes)
        try pad()
    }

    private mutating func put(_ bytes: [UInt8]) throws {
        try Files.writeAll(fd, bytes, what: "write the initramfs")
        offset += bytes.count
    }

    private mutating func pad() throws {
        let n = (4 - offset % 4) % 4
        if n > 0 { try put([UInt8](repeating: 0, count: n)) }
    }
}
