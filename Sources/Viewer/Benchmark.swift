#if canImport(Glibc)
import Glibc
#endif
import Platform

/// Measures the viewer's drawing path: full-screen 1920x1080 frames scaled
/// and converted onto an in-memory screen, against a plain memcpy of the
/// same frame (the floor); and the whole path from a change of the guest
/// screen, through a VNC server and the client, to the local framebuffer.
public enum ViewerBenchmark {
    public struct Figure: Sendable {
        public var name: String
        public var framesPerSecond: Double
        public var millisecondsPerFrame: Double { 1000 / framesPerSecond }
    }

    static func timed(_ iterations: Int, _ body: (Int) -> Void) -> Double {
        body(0)  // warm up
        let t0 = Viewer.now()
        for i in 0..<iterations { body(i + 1) }
        return Double(iterations) / (Viewer.now() - t0)
    }

    /// The drawing path alone.
    public static func drawing(iterations: Int = 60) -> [Figure] {
        let src = MemoryFramebuffer(width: 1920, height: 1080)
        let p = src.surface.base.assumingMemoryBound(to: UInt32.self)
        for i in 0..<(1920 * 1080) { p[i] = UInt32(truncatingIfNeeded: i &* 2654435761) & 0xFFFFFF }
        var out: [Figure] = []
        let floorDst = MemoryFramebuffer(width: 1920, height: 1080)
        out.append(Figure(name: "memcpy 1920x1080x32 (floor)", framesPerSecond: timed(iterations) { i in
            p[0] = UInt32(i)
            memcpy(floorDst.surface.base, src.surface.base, 1920 * 1080 * 4)
        }))
        let cases: [(String, Int, Int, Int, Int, PixelFormat)] = [
            ("1920x1080 -> 1920x1080 XRGB8888 (1:1)", 1920, 1080, 1920, 1080, .xrgb8888),
            ("1920x1080 -> 1920x1080 RGB565", 1920, 1080, 1920, 1080, .rgb565),
            ("1920x1080 -> 1366x768 XRGB8888 (down)", 1920, 1080, 1366, 768, .xrgb8888),
            ("1024x768 -> 1920x1080 XRGB8888 (up, bars)", 1024, 768, 1920, 1080, .xrgb8888),
            ("1280x800 -> 1920x1080 RGB888 (up, bars)", 1280, 800, 1920, 1080, .rgb888),
        ]
        for (name, sw, sh, dw, dh, f) in cases {
            let s = sw == 1920 ? src : MemoryFramebuffer(width: sw, height: sh)
            let dst = MemoryFramebuffer(width: dw, height: dh, format: f)
            let b = ScaledBlitter(sourceWidth: sw, sourceHeight: sh, destination: dst.surface)
            b.paintBars(dst.surface)
            out.append(Figure(name: name, framesPerSecond: timed(iterations) { i in
                s.surface.base.storeBytes(of: UInt32(i), as: UInt32.self)
                b.draw(from: s.surface, x: 0, y: 0, width: sw, height: sh, to: dst.surface)
            }))
        }
        return out
    }

    /// A free TCP port on loopback.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// The "guest": a VNC server in a child process (as QEMU is) that paints
    /// a new full-screen picture of colour `k` for every byte `k` read from
    /// `control`, and exits when it closes.
    static func serveFrames(port: Int, control: Int32, ack: Int32 = -1) -> Never {
        guard let server = try? HostConsoleServer(listen: "127.0.0.1:\(port)", width: 1920, height: 1080) else { _exit(2) }
        server.deferUpdateMilliseconds = 0
        _ = fcntl(control, F_SETFL, fcntl(control, F_GETFL) | O_NONBLOCK)
        let fb = server.framebuffer.base.assumingMemoryBound(to: UInt32.self)
        while true {
            var b: UInt8 = 0
            let n = read(control, &b, 1)
            if n == 0 { _exit(0) }
            if n == 1 {
                let colour = pipelineColour(Int(b))
                for i in 0..<(1920 * 1080) { fb[i] = colour ^ UInt32(i & 1) }
                server.markModified(x: 0, y: 0, width: 1920, height: 1080)
                if ack >= 0 { _ = write(ack, &b, 1) }
            }
            _ = server.processEvents(timeout: 0.0002)
        }
    }

    /// The picture's colour for frame k, as the server stores it (red in the low byte).
    static func pipelineColour(_ k: Int) -> UInt32 { UInt32(k * 40503 & 0xFFFFFF) | 0x010101 }

    /// A full-screen 1920x1080 guest screen change to the local framebuffer,
    /// through libvncserver (in another process, as QEMU is) and the viewer
    /// (libvncclient, raw encoding over loopback, scaler): the clock starts
    /// when the new picture is painted and stops when it is on the local
    /// screen. Frames per second and latency percentiles.
    public static func pipeline(frames: Int = 40) throws -> (fps: Double, p50: Double, p95: Double, max: Double) {
        let port = freePort()
        var fds: [Int32] = [0, 0], acks: [Int32] = [0, 0]
        guard pipe(&fds) == 0, pipe(&acks) == 0 else { throw SystemError("pipe", errno: currentErrno()) }
        let pid = Reaper.shared.spawn { fork() }
        if pid == 0 {
            close(fds[1]); close(acks[0])
            serveFrames(port: port, control: fds[0], ack: acks[1])
        }
        close(fds[0]); close(acks[1])
        defer {
            close(fds[1]); close(acks[0])
            _ = Reaper.shared.wait(pid)
        }
        var options = Viewer.Options(socketPath: "127.0.0.1:\(port)")
        options.display = .memory(width: 1920, height: 1080)
        options.useInput = false
        options.useTerminal = false
        let viewer = try Viewer(options: options)
        let screen = viewer.screen
        func pump(until done: () -> Bool, timeout: Double) -> Bool {
            let end = Viewer.now() + timeout
            while !done() && Viewer.now() < end { viewer.step(timeout: 0.02) }
            return done()
        }
        guard pump(until: { viewer.connected }, timeout: 10) else { kill(pid, SIGKILL); throw VNCError("cannot connect to the benchmark server") }
        // let the handshake settle (desktop-size messages reallocate the
        // client's framebuffer and ask for a full update)
        _ = pump(until: { false }, timeout: 0.5)
        var latencies: [Double] = []
        let start = Viewer.now()
        for k in 1...frames {
            let colour = pipelineColour(k)
            // the local screen is XRGB8888
            let want = (colour & 0xFF) << 16 | (colour & 0xFF00) | (colour >> 16 & 0xFF)
            // the guest paints a new picture (the clock starts when it is
            // painted and marked changed)
            var b = UInt8(k)
            _ = write(fds[1], &b, 1)
            _ = read(acks[0], &b, 1)
            let t0 = Viewer.now()
            let ok = pump(until: {
                let s = screen
                return s.pixel(x: 0, y: 0) == want && s.pixel(x: 1918, y: 1079) == want
            }, timeout: 10)
            if !ok { throw VNCError("frame \(k) never reached the local framebuffer") }
            latencies.append((Viewer.now() - t0) * 1000)
        }
        let elapsed = Viewer.now() - start
        let sorted = latencies.sorted()
        return (Double(frames) / elapsed, sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 95 / 100)], sorted.last!)
    }
}
