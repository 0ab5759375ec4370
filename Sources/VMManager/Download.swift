#if canImport(Glibc)
import Glibc
#endif
import CShims
import Config
import Platform

/// Streams `http://` or `https://HOST[:PORT]/PATH` into a file descriptor
/// (images listed with `url:` in the config). HTTP/1.1, Content-Length,
/// chunked or read-to-close bodies; redirects are not followed. HTTPS
/// (GnuTLS) verifies the server's certificate and name against the system's
/// trust store, or against `caFile`. Integrity comes from the config's `sha256`.
enum Download {
    static func fetch(_ url: String, into out: Int32, limit: Int64, timeout: Int = 60, caFile: String? = nil) throws -> Int64 {
        let https = url.hasPrefix("https://")
        guard https || url.hasPrefix("http://") else {
            throw APIError.unprocessable("url '\(Names.clip(url))': only http:// and https:// are supported (use file: for local images)")
        }
        let rest = url.dropFirst(https ? 8 : 7)
        let hostPort = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(hostPort.count)
        guard let hp = HostPort.parse(String(hostPort)) ?? HostPort.parse(String(hostPort) + (https ? ":443" : ":80")) else {
            throw APIError.unprocessable("url '\(Names.clip(url))' has no valid host")
        }
        guard path.allSatisfy({ $0.isASCII && $0 > " " }) else { throw APIError.unprocessable("url '\(Names.clip(url))' has an invalid path") }
        let fd = try connect(hp.host, hp.port, timeout: timeout)
        defer { close(fd) }
        var tls: OpaquePointer? = nil
        if https {
            var err = [CChar](repeating: 0, count: 512)
            tls = cb_tls_client_connect_verified(fd, hp.host, caFile, &err, err.count)
            guard tls != nil else {
                let why = String(nulTerminated: err)
                throw APIError.unprocessable("\(url): \(why)")
            }
        }
        defer { if let tls { cb_tls_client_close(tls) } }
        let req = Array("GET \(path.isEmpty ? "/" : String(path)) HTTP/1.1\r\nHost: \(hostPort)\r\nUser-Agent: cloudbios\r\nConnection: close\r\n\r\n".utf8)
        if let tls {
            var off = 0
            while off < req.count {
                let n = req.withUnsafeBytes { p in cb_tls_client_send(tls, p.baseAddress! + off, p.count - off) }
                guard n > 0 else { throw APIError.unprocessable("\(url): TLS send failed") }
                off += n
            }
        } else {
            try Files.writeAll(fd, req, what: "send to \(hostPort)")
        }

        var buf = [UInt8](repeating: 0, count: 1 << 16)
        var pending: [UInt8] = []
        func readMore() throws -> Bool {
            let n: Int
            if let tls {
                n = buf.withUnsafeMutableBytes { p in cb_tls_client_recv(tls, p.baseAddress, p.count) }
                guard n >= 0 else { throw APIError.unprocessable("\(url): TLS receive failed or timed out") }
            } else {
                n = try buf.withUnsafeMutableBytes { p in try syscall("read from \(hostPort)") { read(fd, p.baseAddress, p.count) } }
            }
            if n == 0 { return false }
            pending += buf[0..<n]
            return true
        }
        // head
        var headEnd: Int?
        while headEnd == nil {
            if let i = find(pending, [13, 10, 13, 10]) { headEnd = i; break }
            guard pending.count < 65536, try readMore() else { throw APIError.unprocessable("\(url): malformed HTTP response") }
        }
        let head = String(decoding: pending[..<headEnd!], as: UTF8.self).lowercased().split(separator: "\r\n")
        pending.removeFirst(headEnd! + 4)
        let status = head.first?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        guard status == 200 else { throw APIError.unprocessable("\(url): HTTP \(status)") }
        func header(_ n: String) -> String? {
            head.first { $0.hasPrefix(n + ":") }.map { String($0.dropFirst(n.count + 1)).trimmingSpacesAndTabs() }
        }
        var total: Int64 = 0
        func emit(_ bytes: ArraySlice<UInt8>) throws {
            total += Int64(bytes.count)
            guard total <= limit else { throw APIError(413, "\(url): larger than \(Sizes.human(limit))") }
            try Files.writeAll(out, bytes, what: "write image")
        }
        if header("transfer-encoding")?.contains("chunked") == true {
            while true {
                var lineEnd = find(pending, [13, 10])
                while lineEnd == nil { guard try readMore() else { throw APIError.unprocessable("\(url): truncated") }; lineEnd = find(pending, [13, 10]) }
                let sizeText = String(decoding: pending[..<lineEnd!], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(), radix: 16) else { throw APIError.unprocessable("\(url): bad chunk") }
                pending.removeFirst(lineEnd! + 2)
                if size == 0 { break }
                while pending.count < size + 2 { guard try readMore() else { throw APIError.unprocessable("\(url): truncated") } }
                try emit(pending[0..<size])
                pending.removeFirst(size + 2)
            }
        } else if let lenText = header("content-length"), let len = Int64(lenText) {
            guard len <= limit else { throw APIError(413, "\(url): larger than \(Sizes.human(limit))") }
            while true {
                let take = min(Int64(pending.count), len - total)
                if take > 0 { try emit(pending[0..<Int(take)]); pending.removeFirst(Int(take)) }
                if total >= len { break }
                guard try readMore() else { throw APIError.unprocessable("\(url): truncated after \(total) of \(len) bytes") }
            }
        } else {
            repeat {
                try emit(pending[...]); pending.removeAll(keepingCapacity: true)
            } while try readMore()
        }
        return total
    }

    static func find(_ a: [UInt8], _ needle: [UInt8]) -> Int? {
        guard a.count >= needle.count else { return nil }
        for i in 0...(a.count - needle.count) where a[i] == needle[0] && Array(a[i..<i + needle.count]) == needle { return i }
        return nil
    }

    static func connect(_ host: String, _ port: Int, timeout: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
            throw APIError.unprocessable("cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: timeout, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
                close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw APIError.unprocessable("cannot connect to \(host):\(port)")
    }
}

extension String {
    func trimmingSpacesAndTabs() -> String { Substring(self).trimmingCharacters() }
}
