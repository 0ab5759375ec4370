#if canImport(Glibc)
import Glibc
#endif

/// Net: the sockets CloudBIOS opens to other programs (Unix and TCP
/// connect) and the one HTTP/1.1 client on them (`HTTPClient`, with TLS
/// through the GnuTLS loader). Image downloads, install webhooks, the CLI
/// and PID 1's config fetch all go through it; the server side is Panel's.

/// Connects a Unix stream socket (close-on-exec).
public func connectUnix(_ path: String) -> Result<Int32, SystemError> {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
        return .failure(SystemError("socket path too long: \(path)", errno: ENAMETOOLONG))
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
        p.copyBytes(from: bytes)
        p[bytes.count] = 0
    }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { return .failure(SystemError("socket", errno: currentErrno())) }
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if rc != 0 {
        let e = currentErrno()
        Glibc.close(fd)
        return .failure(SystemError("connect \(path)", errno: e))
    }
    return .success(fd)
}

/// Connects a TCP stream socket (close-on-exec) to the first address of
/// `host` that answers, waiting at most `timeout` s for each and never past
/// `deadline` (on Linux SO_SNDTIMEO bounds connect(2)). Its reads and
/// writes keep that bound until it is set again.
public func connectTCP(_ host: String, port: Int, timeout: Double, deadline: Deadline = .never) throws(NetError) -> Int32 {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else { throw .resolve(host) }
    defer { freeaddrinfo(res) }
    var last = ECONNREFUSED
    var ai: UnsafeMutablePointer<addrinfo>? = first
    while let a = ai {
        ai = a.pointee.ai_next
        let left = deadline.remaining
        guard left > 0 else { throw .deadline }
        let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
        if fd < 0 { last = currentErrno(); continue }
        setSocketTimeout(fd, min(timeout, left), SO_RCVTIMEO)
        setSocketTimeout(fd, min(timeout, left), SO_SNDTIMEO)
        if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
        last = currentErrno()
        Glibc.close(fd)
    }
    if last == EINPROGRESS || last == EAGAIN { last = ETIMEDOUT }
    throw .connect(host: host, port: port, errno: last)
}

/// Bounds a socket's blocking reads (`SO_RCVTIMEO`) or writes and connect
/// (`SO_SNDTIMEO`) to `seconds`: at least a millisecond (zero would mean
/// never), at most a day.
func setSocketTimeout(_ fd: Int32, _ seconds: Double, _ option: Int32) {
    let s = min(max(0.001, seconds), 86400)
    var tv = timeval(tv_sec: Int(s), tv_usec: Int((s - s.rounded(.down)) * 1e6))
    setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
}
