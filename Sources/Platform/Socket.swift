#if canImport(Glibc)
import Glibc
#endif

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
