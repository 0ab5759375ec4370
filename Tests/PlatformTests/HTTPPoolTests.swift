import Testing
import Synchronization
@testable import Platform
#if canImport(Glibc)
import Glibc
#endif

/// The keep-alive pool against a real socket server: requests after the
/// first reuse the connection; a server that closes between requests costs
/// a new connection, never a failed request; bodies streamed from files.
@Suite struct HTTPPoolTests {
    final class Count: Sendable { let n = Mutex(0) }

    @Test func requestsAfterTheFirstReuseItsConnection() throws {
        let connections = Count()
        let server = try ScriptedServer { first, c in
            connections.n.withLock { $0 += 1 }
            var request = first
            while !request.isEmpty {
                #expect(!request.contains("Connection: close"))
                let path = request.split(separator: " ").dropFirst().first.map(String.init) ?? "?"
                put(c, "HTTP/1.1 200 OK\r\nContent-Length: \(path.utf8.count)\r\n\r\n\(path)")
                request = ScriptedServer.readRequest(c)
            }
        }
        let pool = HTTPPool(client: HTTPClient(timeout: 5))
        for i in 0..<5 {
            let r = try pool.fetch(HTTPRequest("GET", try HTTPURL(parsing: "http://127.0.0.1:\(server.port)/r\(i)")))
            #expect(r.status == 200 && r.body == Array("/r\(i)".utf8))
        }
        #expect(connections.n.withLock { $0 } == 1)
    }

    @Test func aServerClosingBetweenRequestsCostsAConnectionNotARequest() throws {
        let connections = Count()
        let server = try ScriptedServer { _, c in
            connections.n.withLock { $0 += 1 }
            // answers one request without saying it closes, then closes
            put(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
        let pool = HTTPPool(client: HTTPClient(timeout: 5))
        for _ in 0..<3 {
            let r = try pool.fetch(HTTPRequest("POST", try HTTPURL(parsing: "http://127.0.0.1:\(server.port)/x"), body: [1, 2, 3]))
            #expect(r.status == 200 && r.body == Array("ok".utf8))
            usleep(50_000)
        }
        #expect(connections.n.withLock { $0 } == 3)
    }

    @Test func aBodyStreamsFromAFile() throws {
        let path = "/tmp/cbtest-pool-body-\(getpid())"
        let bytes = (0..<(3 << 20)).map { UInt8(65 + $0 % 26) }
        try Files.writeAtomically(path, bytes)
        defer { Files.remove(path) }
        let got = Mutex<[UInt8]>([])
        let server = try ScriptedServer { request, c in
            got.withLock { $0 = Array(request.utf8) }
            put(c, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        }
        var request = HTTPRequest("PUT", try HTTPURL(parsing: "http://127.0.0.1:\(server.port)/img"))
        request.bodyFile = (path, Int64(bytes.count))
        let r = try HTTPClient(timeout: 5).fetch(request)
        #expect(r.status == 201)
        let text = got.withLock { $0 }
        #expect(String(decoding: text.prefix(200), as: UTF8.self).contains("Content-Length: \(bytes.count)\r\n"))
        #expect(Array(text.suffix(bytes.count)) == bytes)
    }
}
