#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Synchronization

/// The image store: `STATE/images/NAME`, with each image's SHA-256 cached in
/// `STATE/images/.sha256/NAME`. Uploads go to `STATE/images/.incoming/` and
/// appear under their name only when finished (fsync + rename).
struct ImageStore: Sendable {
    let directory: String
    var hashDirectory: String { "\(directory)/.sha256" }
    var incomingDirectory: String { "\(directory)/.incoming" }

    init(directory: String) throws {
        self.directory = directory
        try Files.makeDirectories(directory)
        try Files.makeDirectories("\(directory)/.sha256")
        try Files.makeDirectories("\(directory)/.incoming")
        // half-finished uploads from a previous run
        for f in Files.list(incomingDirectory) { Files.remove("\(incomingDirectory)/\(f)") }
    }

    func path(_ name: String) -> String { "\(directory)/\(name)" }

    func exists(_ name: String) -> Bool { Names.checkImage(name) == nil && Files.exists(path(name)) }

    var names: [String] {
        Files.list(directory).filter { !$0.hasPrefix(".") && Names.checkImage($0) == nil && !Files.isDirectory(path($0)) }
    }

    func cachedHash(_ name: String) -> String? {
        guard let h = Files.readTrimmed("\(hashDirectory)/\(name)"), Names.checkSHA256(h) == nil else { return nil }
        return h
    }

    func info(_ name: String) -> ImageInfo? {
        guard let size = Files.size(path(name)) else { return nil }
        var i = ImageInfo(name: name, size: size)
        i.sha256 = cachedHash(name)
        return i
    }

    /// Hash of a stored image, computing and caching it when missing.
    func hash(_ name: String) throws -> String {
        if let h = cachedHash(name) { return h }
        let h = try sha256File(path(name))
        try Files.writeAtomically("\(hashDirectory)/\(name)", h + "\n")
        return h
    }

    /// Moves a finished temp file into the store under `name`.
    func install(temp: String, as name: String, sha256: String) throws {
        try syscall("rename \(temp)") { rename(temp, path(name)) }
        try Files.writeAtomically("\(hashDirectory)/\(name)", sha256 + "\n")
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    func remove(_ name: String) {
        Files.remove(path(name))
        Files.remove("\(hashDirectory)/\(name)")
    }

    /// A fresh temp file in the incoming directory.
    /// Why `download` did not install an image.
    enum DownloadError: Error {
        /// The transfer failed (the server, the network, a limit).
        case fetch(any Error)
        /// The image arrived whole but its SHA-256 is this, not the one wanted.
        case sha256Mismatch(String)
    }

    /// Downloads `url` into the store as `name`, blocking: streamed into a
    /// temp file through a `HashingFileSink` (hashed as it streams),
    /// fsynced, checked against `sha256` when given, then installed;
    /// nothing is left behind on failure.
    /// Returns the image's SHA-256.
    func download(_ url: String, as name: String, sha256 want: String?, limits: Download.Limits, caFile: String?) throws -> String {
        let (tmp, fd) = try createTemp(for: name)
        var open = true
        do {
            // hashed and written by threads of their own while the next
            // bytes arrive; this thread only receives and copies
            let sink = try HashingFileSink(fd: fd, what: tmp)
            do {
                _ = try Download.fetch(url, limits: limits, caFile: caFile) { bytes, _ in try sink.write(bytes) }
            } catch {
                throw DownloadError.fetch(error)
            }
            let h = try sink.finish()
            try syscall("fsync \(tmp)") { fsync(fd) }
            close(fd)
            open = false
            if let want, want != h { throw DownloadError.sha256Mismatch(h) }
            try install(temp: tmp, as: name, sha256: h)
            return h
        } catch {
            if open { close(fd) }
            Files.remove(tmp)
            throw error
        }
    }

    func createTemp(for name: String) throws -> (path: String, fd: Int32) {
        let suffix = UInt64.random(in: 1...UInt64.max)
        let p = "\(incomingDirectory)/\(name).\(String(suffix, radix: 16))"
        let fd = try syscall("create \(p)") { open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        return (p, fd)
    }

    /// Copies a file into the store (streamed), verifying `sha256` when given.
    func importFile(_ source: String, as name: String, sha256 expected: String?) throws -> String {
        let (tmp, out) = try createTemp(for: name)
        do {
            let inp = try FileDescriptor.open(source, O_RDONLY)
            defer { inp.close() }
            try FileDescriptor(rawValue: out).copy(from: inp, what: ("read \(source)", "write \(tmp)"))
            try syscall("fsync \(tmp)") { fsync(out) }
            close(out)
            let h = try sha256File(tmp)
            if let expected, expected != h {
                Files.remove(tmp)
                throw ImageError.invalid("image '\(name)': sha256 mismatch (expected \(expected), got \(h))")
            }
            try install(temp: tmp, as: name, sha256: h)
            return h
        } catch {
            close(out)
            Files.remove(tmp)
            throw error
        }
    }
}

/// A streaming upload into the image store. The HTTP layer writes the body
/// chunk by chunk; `finish` makes the image visible atomically.
public final class ImageUploadSession: Sendable {
    public let name: String
    private struct State { var fd: Int32; var written: Int64 = 0; var done = false }
    private let state: Mutex<State>
    private let temp: String
    private let expectedSize: Int64?
    private let maxSize: Int64
    private let complete: @Sendable (_ temp: String?, _ written: Int64) async throws -> ImageInfo

    init(name: String, temp: String, fd: Int32, expectedSize: Int64?, maxSize: Int64,
         complete: @escaping @Sendable (_ temp: String?, _ written: Int64) async throws -> ImageInfo) {
        self.name = name; self.temp = temp; self.expectedSize = expectedSize; self.maxSize = maxSize
        self.complete = complete
        self.state = Mutex(State(fd: fd))
    }

    deinit {
        let s = state.withLock { $0 }
        if !s.done { close(s.fd); unlink(temp) }
    }

    public func write(_ chunk: UnsafeRawBufferPointer) throws {
        try state.withLock { s in
            guard !s.done else { throw ImageError.conflict("upload of '\(name)' already ended") }
            guard s.written + Int64(chunk.count) <= maxSize else {
                throw ImageError.tooLarge("image '\(name)' is larger than \(Sizes.human(maxSize))")
            }
            var off = 0
            while off < chunk.count {
                let n = try syscall("write \(temp)") { Glibc.write(s.fd, chunk.baseAddress! + off, chunk.count - off) }
                off += n
            }
            s.written += Int64(chunk.count)
        }
    }

    public func finish() async throws -> ImageInfo {
        let (fd, written) = try state.withLock { s -> (Int32, Int64) in
            guard !s.done else { throw ImageError.conflict("upload of '\(name)' already ended") }
            s.done = true
            return (s.fd, s.written)
        }
        defer { close(fd) }
        if let expectedSize, expectedSize != written {
            unlink(temp)
            _ = try? await complete(nil, written)
            throw ImageError.badRequest("upload of '\(name)' ended after \(written) of \(expectedSize) bytes")
        }
        do {
            try syscall("fsync \(temp)") { fsync(fd) }
        } catch {
            unlink(temp)
            _ = try? await complete(nil, written)
            throw error
        }
        return try await complete(temp, written)
    }

    public func abort() {
        let fd: Int32? = state.withLock { s in
            if s.done { return nil }
            s.done = true
            return s.fd
        }
        guard let fd else { return }
        close(fd)
        unlink(temp)
        let complete = self.complete
        Task { _ = try? await complete(nil, 0) }
    }
}
