import Testing
import Config
import Platform
@testable import VMManager
#if canImport(Glibc)
import Glibc
#endif

/// An image server that misbehaves in every way the download must survive,
/// on 127.0.0.1 (the path picks the misbehaviour). It writes its port to
/// the file named by its second argument.
let hostileServer = #"""
import socket, socketserver, sys, time

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            got = s.recv(4096)
            if not got:
                return
            data += got
        path = data.split(b" ")[1].decode()
        ok = b"HTTP/1.1 200 OK\r\n"
        if path == "/silent":                       # never answers
            time.sleep(60)
        elif path == "/dribble":                    # a byte at a time, never quite stalling
            s.sendall(ok + b"Content-Length: 100000\r\n\r\n")
            for _ in range(100000):
                s.sendall(b"x")
                time.sleep(0.1)
        elif path == "/huge-chunk":                 # a chunk size no one could allocate
            s.sendall(ok + b"Transfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n" + b"x" * 1000)
            time.sleep(60)
        elif path == "/overflow-chunk":             # more hex digits than an Int64 holds
            s.sendall(ok + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nxx")
            time.sleep(60)
        elif path == "/negative-chunk":
            s.sendall(ok + b"Transfer-Encoding: chunked\r\n\r\n-10\r\nxx")
            time.sleep(60)
        elif path == "/endless-chunk-line":         # a size line that never ends
            s.sendall(ok + b"Transfer-Encoding: chunked\r\n\r\n1")
            for _ in range(1000):
                s.sendall(b"0" * 1000)
            time.sleep(60)
        elif path == "/chunk-over-limit":           # each chunk fine, the sum too big
            s.sendall(ok + b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(100):
                s.sendall(b"1000\r\n" + b"y" * 4096 + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        elif path == "/short-close":                # fewer bytes than announced, then EOF
            s.sendall(ok + b"Content-Length: 100000\r\n\r\n" + b"z" * 1000)
        elif path == "/short-hang":                 # fewer bytes than announced, then nothing
            s.sendall(ok + b"Content-Length: 100000\r\n\r\n" + b"z" * 1000)
            time.sleep(60)
        elif path == "/negative-length":
            s.sendall(ok + b"Content-Length: -5\r\n\r\n")
        elif path == "/too-long":                   # announced larger than the limit
            s.sendall(ok + b"Content-Length: 1000000000000\r\n\r\n")
            time.sleep(60)
        elif path == "/loop":                       # a redirect loop
            s.sendall(b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
        elif path == "/to-good":                    # a redirect worth following
            s.sendall(b"HTTP/1.1 301 Moved\r\nLocation: /good\r\nContent-Length: 0\r\n\r\n")
        elif path == "/good":
            s.sendall(ok + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif path == "/endless-head":               # headers that never end
            s.sendall(ok)
            for _ in range(1000):
                s.sendall(b"X-Pad: " + b"p" * 1000 + b"\r\n")
            time.sleep(60)

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

srv = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(srv.server_address[1]))
srv.serve_forever()
"""#

@Suite(.serialized) struct HostileImageServerTests {
    final class Server {
        let pid: pid_t
        let port: Int
        init(dir: String) throws {
            try Files.writeAtomically("\(dir)/hostile.py", hostileServer)
            pid = try Launcher("/usr/bin/python3", ["\(dir)/hostile.py", "\(dir)/port"]).spawn()
            var port: Int?
            for _ in 0..<100 where port == nil {
                port = Files.readTrimmed("\(dir)/port").flatMap { Int($0) }
                if port == nil { usleep(50_000) }
            }
            guard let port else { kill(pid, SIGKILL); _ = Launcher.wait(pid); throw TestError("the hostile server did not start") }
            self.port = port
        }
        deinit { kill(pid, SIGKILL); _ = Launcher.wait(pid) }
    }

    /// Downloads `path` into a scratch file: the error's text, or nil with
    /// the bytes on success; and how long it took.
    func fetch(_ server: Server, _ path: String, dir: String, size: Int64 = 1 << 20, deadline: Double = 3,
               readTimeout: Double = 1) -> (error: String?, bytes: [UInt8], seconds: Double) {
        let file = "\(dir)/out"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(fd); unlink(file) }
        let start = now()
        let limits = Download.Limits(size: size, deadline: start + deadline, readTimeout: readTimeout)
        do {
            _ = try Download.fetch("http://127.0.0.1:\(server.port)\(path)", into: fd, limits: limits)
            return (nil, (try? Files.read(file)) ?? [], now() - start)
        } catch {
            return ("\(error)", [], now() - start)
        }
    }

    @Test(.timeLimit(.minutes(2))) func everyMisbehaviourEndsInAnErrorInTime() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let server = try Server(dir: dir)
        let cases: [(path: String, says: String, within: Double)] = [
            ("/silent", "the server sent nothing for 1 s", 2),
            ("/dribble", "not done within the download's deadline", 4),
            ("/huge-chunk", "a chunk of 9223372036854775807 bytes makes it larger than", 1),
            ("/overflow-chunk", "bad chunked encoding: chunk size 'ffffffffffffffffffff'", 1),
            ("/negative-chunk", "bad chunked encoding: chunk size '-10'", 1),
            ("/endless-chunk-line", "chunk-size line too long", 1),
            ("/chunk-over-limit", "larger than", 1),
            ("/short-close", "truncated: 100000 bytes announced", 1),
            ("/short-hang", "the server sent nothing for 1 s", 2),
            ("/negative-length", "bad Content-Length '-5'", 1),
            ("/too-long", "larger than", 1),
            ("/loop", "more than 5 redirects", 1),
            ("/endless-head", "malformed HTTP response", 1),
        ]
        for c in cases {
            let r = fetch(server, c.path, dir: dir, size: c.path == "/chunk-over-limit" ? 100_000 : 1 << 20)
            #expect(r.error?.contains(c.says) == true, "\(c.path): \(r.error ?? "succeeded")")
            #expect(r.seconds < c.within, "\(c.path) took \(r.seconds) s")
        }
        // redirects are followed, chunk extensions ignored
        let good = fetch(server, "/to-good", dir: dir)
        #expect(good.error == nil && good.bytes == Array("hello world".utf8), "\(good.error ?? "")")
    }

    @Test(.timeLimit(.minutes(2))) func configDownloadsFailAloneWhileTheManagerAnswers() async throws {
        let dir = Guest.stateDir()
        defer { Files.removeTree(dir) }
        let server = try Server(dir: dir)
        var o = VMManagerOptions(stateDir: dir)
        o.nat = .user
        o.downloadTimeout = 3
        o.downloadReadTimeout = 1
        let m = try VMManager(options: o)
        var sources: [ImageSource] = []
        for path in ["/silent", "/dribble", "/huge-chunk", "/short-hang", "/loop", "/good"] {
            var s = ImageSource(name: "img" + path.replacingSlashes())
            s.url = "http://127.0.0.1:\(server.port)\(path)"
            sources.append(s)
        }
        var vm = VMSpec(name: "waits")
        vm.kernel = "img-silent"
        vm.network = .none
        vm.autostart = true
        await m.announceDownloads(sources)
        _ = await m.applyConfig([vm])
        // autostart leaves the VM for later: its kernel is still downloading
        #expect(await m.autostart() == ["waits"])
        #expect(try await m.vm("waits").message?.contains("downloading: 'img-silent'") == true)

        let downloads = Task { await m.importImages(sources, baseDirectory: dir) }
        // the manager answers while the downloads hang
        for _ in 0..<5 {
            let asked = now()
            _ = await m.list()
            _ = await m.images()
            #expect(now() - asked < 0.5)
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        let failures = await downloads.value
        #expect(failures.count == 5, "\(failures)")
        for (name, says) in [("img-silent", "sent nothing"), ("img-dribble", "deadline"), ("img-huge-chunk", "larger than"),
                             ("img-short-hang", "sent nothing"), ("img-loop", "redirects")] {
            #expect(failures.contains { $0.hasPrefix("image '\(name)': download failed: ") && $0.contains(says) }, "\(name): \(failures)")
        }
        #expect(await m.images().map(\.name) == ["img-good"])
        #expect(Files.list("\(dir)/images/.incoming").isEmpty)
        // the VM says why it cannot start
        let message = try await m.vm("waits").message ?? ""
        #expect(message.contains("import failed: image 'img-silent': download failed") && !message.contains("downloading"), "\(message)")
    }
}

extension String {
    func replacingSlashes() -> String { String(map { $0 == "/" ? "-" : $0 }) }
}
