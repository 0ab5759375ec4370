#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import Testing
@testable import Panel

/// `GET /api/v1/vms` throughput against nginx serving the same JSON as a
/// static file (wrk, 64 connections). Runs when CLOUDBIOS_BENCH=1.
@Suite struct BenchTests {
    @Test(.enabled(if: getenv("CLOUDBIOS_BENCH") != nil))
    func vmsThroughputVersusNginx() async throws {
        let s = try TestServer(tag: "bench")
        for i in 0..<8 { await s.backend.addVM("vm\(i)", memory: 256 + i) }
        let (token, _) = try await s.login()
        let body = try await s.http.request("GET", "/api/v1/vms", headers: ["Authorization": "Bearer \(token)"]).body
        try Files.writeAtomically(s.dir + "/vms.json", body)
        // nginx on a free port, serving the same bytes.
        let probe = try PanelServer.listenSocket(host: "127.0.0.1", port: 0)
        close(probe.fd)
        let nport = probe.port
        let conf = """
        daemon off; worker_processes auto; pid \(s.dir)/nginx.pid; error_log \(s.dir)/nginx.err;
        events { worker_connections 1024; }
        http { access_log off; server { listen 127.0.0.1:\(nport); root \(s.dir);
               location / { default_type application/json; } } }
        """
        try Files.writeAtomically(s.dir + "/nginx.conf", conf)
        let pid = try Launcher("/usr/sbin/nginx", ["-c", s.dir + "/nginx.conf", "-p", s.dir]).spawn()
        defer { kill(pid, SIGTERM); _ = Launcher.wait(pid) }
        usleep(300_000)
        let secs = getenv("CLOUDBIOS_BENCH_SECONDS").map { String(cString: $0) } ?? "5"
        func wrk(_ url: String, _ extra: [String]) async throws -> String {
            try await offPool { try Launcher("/usr/bin/wrk", ["-t2", "-c64", "-d\(secs)s", "--latency"] + extra + [url]).run().output }
        }
        let ng = try await wrk("http://127.0.0.1:\(nport)/vms.json", [])
        let us = try await wrk(s.server.url + "/api/v1/vms", ["-H", "Authorization: Bearer \(token)"])
        func rps(_ out: String) -> Double {
            out.split(separator: "\n").first { $0.hasPrefix("Requests/sec:") }.flatMap { Double($0.split(separator: " ").last!) } ?? 0
        }
        func p99(_ out: String) -> String {
            out.split(separator: "\n").first { $0.trimmingCharacters(in: " ").hasPrefix("99%") }.map { String($0.split(separator: " ").last!) } ?? "?"
        }
        let health = try await wrk(s.server.url + "/api/v1/health", [])
        print("bench: cloudbios GET /api/v1/health \(Int(rps(health))) req/s, p99 \(p99(health))")
        // The same route on a second server: every request suspends, awaits
        // the backend and resumes.
        let api = PanelAPI(backend: s.backend, users: [PanelUser(name: "admin", passwordHash: TestServer.hash)], tls: false,
                           version: "bench", webRoot: s.dir)
        let raw = HTTPServer(api: api)
        let l = try PanelServer.listenSocket(host: "127.0.0.1", port: 0)
        try raw.start(listenFD: l.fd, ipv6: false, threads: 2, tls: nil)
        defer { raw.stop() }
        let tok = api.sessions.create(user: "admin").token
        let uncached = try await wrk("http://127.0.0.1:\(l.port)/api/v1/vms", ["-H", "Authorization: Bearer \(tok)"])
        print("bench: cloudbios GET /api/v1/vms on a second server \(Int(rps(uncached))) req/s, p99 \(p99(uncached))")
        print("bench: body \(body.count) bytes")
        print("bench: nginx \(Int(rps(ng))) req/s, p99 \(p99(ng))")
        print("bench: cloudbios GET /api/v1/vms \(Int(rps(us))) req/s, p99 \(p99(us)), ratio \(String(rps(us) / max(1, rps(ng))))")
        print("bench: rss \(rssBytes() >> 20) MiB (test process)")
        #expect(rps(us) > 0 && rps(ng) > 0, "\(us)\n\(ng)")
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(drop { set.contains($0) }) }
}
