#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform

/// The owner node's answer to a forwarded WebSocket request: its
/// connection once it switched protocols, or its refusal.
public enum RelayedSocket: @unchecked Sendable {
    case switched(stream: NetStream, headers: [(String, String)], early: [UInt8])
    case answered(HTTPResponse)
}

extension FleetRelay {
    public func openWebSocket(to node: String, target: String, headers: [(String, String)], user: String) async throws -> RelayedSocket {
        throw RequestError(.unavailable, "consoles are not forwarded between nodes here")
    }
}

/// The consoles of a VM on another node (`/vnc`'s RFB, the terminal): the
/// node a client reaches opens the same WebSocket on the owner node (over
/// the node API, with the node credential) and, once both switched
/// protocols, passes the frames through unchanged both ways; the owner
/// bridges them to the VM's socket as for a local client.
extension PanelAPI {
    /// The headers of a WebSocket request the owner needs to answer it
    /// (its accept key derives from the client's own key).
    static let webSocketHeaders = ["upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol"]

    func fleetWebSocket(_ relay: any FleetRelay, vm: String, _ head: RequestHead, user: String, local: Plan) -> Plan {
        .run {
            await PanelAPI.guarded {
                guard let owner = try await relay.remoteOwner(of: vm) else { return await PanelAPI.runLocal(local, []) }
                if try await relay.otherNodes().first(where: { $0.name == owner })?.up == false {
                    throw RequestError(.unavailable, "VM '\(vm)' is on node '\(owner)', which is down")
                }
                // a session token in the query is this node's, never passed on
                var h = head
                h.query["token"] = nil
                let pass = PanelAPI.webSocketHeaders.compactMap { k in head.header(k).map { (k, $0) } }
                switch try await relay.openWebSocket(to: owner, target: PanelAPI.target(h), headers: pass, user: user) {
                case .answered(let r):
                    return r
                case .switched(let stream, let headers, let early):
                    let keep = ["upgrade", "sec-websocket-accept", "sec-websocket-protocol"]
                    return HTTPResponse(status: 101, headers: headers.filter { keep.contains($0.0.lowercased()) }, body: .upgrade { conn in
                        WebSocketTunnel.start(conn, stream, early: early)
                    })
                }
            }
        }
    }
}

/// Bytes both ways between a client's upgraded connection and the owner
/// node's, each direction on its own thread, until either side ends.
enum WebSocketTunnel {
    static func start(_ conn: WebSocketConnection, _ stream: NetStream, early: [UInt8]) {
        let t = Tunnel(conn, stream)
        guard startThread({ t.down(early) }) else { stream.shutdown(); conn.close(); return }
        guard startThread({ t.up() }) else { stream.shutdown(); _ = shutdown(conn.fd, Int32(SHUT_RDWR)); t.done(); return }
    }

    final class Tunnel: @unchecked Sendable {
        let conn: WebSocketConnection
        let stream: NetStream
        private let lock = Lock()
        private var running = 2
        init(_ conn: WebSocketConnection, _ stream: NetStream) { self.conn = conn; self.stream = stream }

        /// The second direction to end closes the client's connection.
        func done() {
            let last = lock.withLock { running -= 1; return running == 0 }
            if last { conn.close() }
        }

        /// Owner → client.
        func down(_ early: [UInt8]) {
            defer { _ = shutdown(conn.fd, Int32(SHUT_RDWR)); done() }
            if !early.isEmpty && !sendAll(conn.fd, early) { stream.shutdown(); return }
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n: Int
                do { n = try buf.withUnsafeMutableBytes { try stream.receive($0) } } catch {
                    if case .timedOut? = error as? NetError { continue }
                    stream.shutdown()
                    return
                }
                if n == 0 || !sendAll(conn.fd, Array(buf[0..<n])) { stream.shutdown(); return }
            }
        }

        /// Client → owner.
        func up() {
            defer { stream.shutdown(); done() }
            do {
                if !conn.leftover.isEmpty { try stream.send(conn.leftover) }
            } catch { return }
            var buf = [UInt8](repeating: 0, count: 65536)
            var p = pollfd(fd: conn.fd, events: Int16(POLLIN), revents: 0)
            while true {
                let n = buf.withUnsafeMutableBytes { Glibc.recv(conn.fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    let e = currentErrno()
                    if e == EINTR { continue }
                    if e == EAGAIN { p.revents = 0; _ = poll(&p, 1, -1); continue }
                    return
                }
                if n == 0 { return }
                do { try stream.send(Array(buf[0..<n])) } catch { return }
            }
        }

        func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { p in Glibc.send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL)) }
                if n < 0 {
                    let e = currentErrno()
                    if e == EINTR { continue }
                    if e == EAGAIN {
                        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&p, 1, 1000)
                        continue
                    }
                    return false
                }
                off += n
            }
            return true
        }
    }
}
