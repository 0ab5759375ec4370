#if canImport(Glibc)
import Glibc
#endif
import Platform

/// Serves the panel's files (and noVNC's) from disk with validators.
struct StaticFiles: Sendable {
    var webRoot: String
    var novncRoot: String

    /// `--web-root`, else the installed location, else ./web.
    static func resolveWebRoot(_ given: String?) -> String {
        if let given { return given }
        for c in ["/usr/share/cloudbios/web", "web"] where Files.isDirectory(c) { return c }
        return "web"
    }

    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8",
        "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8", "json": "application/json", "map": "application/json",
        "yaml": "application/yaml", "yml": "application/yaml", "txt": "text/plain; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
        "gif": "image/gif", "ico": "image/x-icon", "webp": "image/webp",
        "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "oga": "audio/ogg", "mp3": "audio/mpeg",
        "wasm": "application/wasm",
    ]

    static func contentType(_ path: String) -> String {
        let ext = path.split(separator: "/").last?.split(separator: ".").last.map { $0.lowercased() } ?? ""
        return types[ext] ?? "application/octet-stream"
    }

    /// `rel` was checked by the router (no `..`, no hidden segments).
    func serve(root: String, _ rel: String, _ head: RequestHead) -> HTTPResponse {
        let path = root + "/" + rel
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .error(404, "not found: /\(Names_clip(rel))") }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return .error(404, "not found: /\(Names_clip(rel))")
        }
        let mtime = Int64(st.st_mtim.tv_sec)
        let etag = "\"\(String(mtime, radix: 16))-\(String(Int64(st.st_size), radix: 16))\""
        let lastModified = httpDate(mtime)
        var headers: [(String, String)] = [
            ("ETag", etag), ("Last-Modified", lastModified), ("Cache-Control", "no-cache"),
        ]
        if let inm = head.header("if-none-match"), inm.split(separator: ",").contains(where: { $0.trimmingSpaces == etag || $0.trimmingSpaces == "*" }) {
            close(fd)
            return HTTPResponse(status: 304, headers: headers)
        }
        if head.header("if-none-match") == nil, let ims = head.header("if-modified-since"), ims == lastModified {
            close(fd)
            return HTTPResponse(status: 304, headers: headers)
        }
        headers.insert(("Content-Type", StaticFiles.contentType(rel)), at: 0)
        return HTTPResponse(status: 200, headers: headers, body: .file(fd: fd, offset: 0, length: Int64(st.st_size)))
    }
}

func Names_clip(_ s: String) -> String {
    let printable = String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
    return printable.count > 60 ? String(printable.prefix(60)) + "…" : printable
}

/// RFC 7231 IMF-fixdate.
func httpDate(_ t: Int64) -> String {
    var tt = time_t(t)
    var tmv = tm()
    gmtime_r(&tt, &tmv)
    var buf = [CChar](repeating: 0, count: 64)
    let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S GMT", &tmv)
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// RFC 3339 UTC.
func rfc3339(_ t: Double) -> String {
    var tt = time_t(t)
    var tmv = tm()
    gmtime_r(&tt, &tmv)
    var buf = [CChar](repeating: 0, count: 64)
    let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &tmv)
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
