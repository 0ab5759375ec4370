#if canImport(Glibc)
import Glibc
#endif
import CVNC
import CViewer
import Platform

/// The host's local screen exported as a VNC server (libvncserver), like an
/// IPMI KVM: a cloud machine without a console can still be reached at the
/// PE level. Off by default; enabled with `console: {vnc: "127.0.0.1:5900"}`
/// in the config (or `cloudbios viewer --export-console ADDR`). No VNC
/// password: listen on loopback and reach it through an SSH tunnel or the
/// panel.
///
/// The picture is mirrored a few times a second from the local screen (the
/// guest as the viewer shows it, or the text console). Keys typed by a VNC
/// user are injected through a uinput keyboard, so they reach the text
/// console and — through the viewer — the guest, hotkey included.
public final class HostConsoleServer {
    public enum Event: Equatable, Sendable {
        case key(keysym: UInt32, down: Bool)
        case pointer(x: Int, y: Int, buttons: Int)
    }

    private let screen: rfbScreenInfoPtr
    private var buffer: UnsafeMutablePointer<UInt32>
    private var width: Int, height: Int
    private var events: [Event] = []
    private var keyboard: Int32 = -1
    private var shiftHeld = false
    private var textConsole: FBDevDisplay?
    private var textConsoleTried = 0.0
    public let address: String

    /// Listens on "HOST:PORT" ("127.0.0.1:5900", "0.0.0.0:5900", "[::1]:5900").
    public init(listen address: String, width: Int = 1024, height: Int = 768) throws {
        self.address = address
        guard let colon = address.lastIndex(of: ":"), let port = Int32(address[address.index(after: colon)...]), port > 0, port < 65536 else {
            throw VNCError("console VNC address '\(address)' is not HOST:PORT")
        }
        var host = String(address[..<colon])
        let v6 = host.hasPrefix("[")
        if v6 { host = String(host.dropFirst().dropLast()) }
        self.width = width; self.height = height
        buffer = .allocate(capacity: width * height)
        buffer.initialize(repeating: 0, count: width * height)
        do { try VNCLibrary.load() } catch { buffer.deallocate(); throw error }
        rfbLogEnable(Log.verbose ? 1 : 0)
        var argc: Int32 = 0
        guard let s = rfbGetScreen(&argc, nil, Int32(width), Int32(height), 8, 3, 4) else {
            buffer.deallocate()
            throw VNCError("cannot allocate the console VNC server")
        }
        screen = s
        s.pointee.frameBuffer = UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: CChar.self)
        s.pointee.desktopName = UnsafePointer(strdup("CloudBIOS console"))
        s.pointee.alwaysShared = 1
        // no cursor drawn into the picture: libvncserver would save and
        // restore the pixels under it, undoing changes made meanwhile
        s.pointee.cursor = nil
        s.pointee.autoPort = 0
        s.pointee.httpPort = 0
        s.pointee.httpDir = nil
        if v6 {
            s.pointee.port = 0
            s.pointee.ipv6port = port
            s.pointee.listen6Interface = strdup(host)
        } else {
            s.pointee.port = port
            s.pointee.ipv6port = 0
            var addr: in_addr_t = 0
            let ok = host.withCString { rfbStringToAddr(UnsafeMutablePointer(mutating: $0), &addr) }
            if ok == 0 {
                rfbScreenCleanup(s); buffer.deallocate()
                throw VNCError("console VNC address '\(host)' is not an IPv4 address")
            }
            s.pointee.listenInterface = addr
        }
        s.pointee.kbdAddEvent = { down, sym, cl in
            guard let cl, let me = HostConsoleServer.owner(cl.pointee.screen) else { return }
            me.remoteKey(UInt32(sym), down != 0)
        }
        s.pointee.ptrAddEvent = { mask, x, y, cl in
            guard let cl, let me = HostConsoleServer.owner(cl.pointee.screen) else { return }
            me.events.append(.pointer(x: Int(x), y: Int(y), buttons: Int(mask)))
        }
        s.pointee.screenData = Unmanaged.passUnretained(self).toOpaque()
        rfbInitServerWithPthreadsAndZRLE(s)
        if s.pointee.listenSock == -1 && s.pointee.listen6Sock == -1 {
            rfbScreenCleanup(s); buffer.deallocate()
            throw VNCError("cannot listen on \(address) for the console VNC server")
        }
        let kb = cb_uinput_open("CloudBIOS remote console keyboard")
        if kb >= 0 { keyboard = kb } else {
            Log.warning("console: no uinput (\(String(cString: strerror(-kb)))); remote keys go to the guest only")
        }
    }

    deinit {
        screen.pointee.screenData = nil
        rfbShutdownServer(screen, 1)
        screen.pointee.frameBuffer = nil
        rfbScreenCleanup(screen)
        buffer.deallocate()
        cb_uinput_close(keyboard)
    }

    private static func owner(_ s: rfbScreenInfoPtr?) -> HostConsoleServer? {
        guard let p = s?.pointee.screenData else { return nil }
        return Unmanaged<HostConsoleServer>.fromOpaque(p).takeUnretainedValue()
    }

    public var hasVirtualKeyboard: Bool { keyboard >= 0 }
    /// The TCP port listened on.
    public var port: Int { Int(screen.pointee.port > 0 ? screen.pointee.port : screen.pointee.ipv6port) }

    private func remoteKey(_ sym: UInt32, _ down: Bool) {
        events.append(.key(keysym: sym, down: down))
        guard keyboard >= 0, let (code, needsShift) = Keymap.keycodes[sym] else { return }
        if code == Keymap.keyLeftShift || code == Keymap.keyRightShift { shiftHeld = down }
        let wrap = needsShift && !shiftHeld && down
        if wrap { _ = cb_uinput_key(keyboard, Keymap.keyLeftShift, 1) }
        _ = cb_uinput_key(keyboard, code, down ? 1 : 0)
        if wrap { _ = cb_uinput_key(keyboard, Keymap.keyLeftShift, 0) }
    }

    /// Serves clients for up to `timeout` seconds; returns what they sent.
    public func processEvents(timeout: Double = 0) -> [Event] {
        _ = rfbProcessEvents(screen, Int(timeout * 1e6))
        let e = events
        events = []
        return e
    }

    /// Copies a picture into the exported screen (resizing it when the
    /// picture's size changed) and marks the rows that changed.
    public func mirror(_ src: Surface) {
        if src.width != width || src.height != height {
            let nb = UnsafeMutablePointer<UInt32>.allocate(capacity: src.width * src.height)
            nb.initialize(repeating: 0, count: src.width * src.height)
            rfbNewFramebuffer(screen, UnsafeMutableRawPointer(nb).assumingMemoryBound(to: CChar.self),
                              Int32(src.width), Int32(src.height), 8, 3, 4)
            buffer.deallocate()
            buffer = nb
            width = src.width; height = src.height
        }
        // rfbGetScreen's format: red in the low byte (0x00BBGGRR)
        let dst = Surface(base: UnsafeMutableRawPointer(buffer), width: width, height: height, stride: width * 4, format: .xbgr8888)
        var row = [UInt32](repeating: 0, count: width)
        var first = -1, last = -1
        for y in 0..<height {
            let line = src.base + y * src.stride
            row.withUnsafeMutableBufferPointer { r in
                if src.format == .xrgb8888 {
                    let s = line.assumingMemoryBound(to: UInt32.self)
                    for x in 0..<width {
                        let p = s[x]
                        r[x] = (p >> 16) & 0xFF | (p & 0xFF00) | (p & 0xFF) << 16
                    }
                } else {
                    for x in 0..<width {
                        let c = src.rgb(x: x, y: y)
                        r[x] = UInt32(c.r) | UInt32(c.g) << 8 | UInt32(c.b) << 16
                    }
                }
                let d = dst.base + y * dst.stride
                if memcmp(d, r.baseAddress!, width * 4) != 0 {
                    memcpy(d, r.baseAddress!, width * 4)
                    if first < 0 { first = y }
                    last = y
                }
            }
        }
        if first >= 0 { rfbMarkRectAsModified(screen, 0, Int32(first), Int32(width), Int32(last + 1)) }
    }

    /// The exported picture itself (0x00BBGGRR), for callers that draw
    /// directly; call `markModified` afterwards.
    public var framebuffer: Surface {
        Surface(base: UnsafeMutableRawPointer(buffer), width: width, height: height, stride: width * 4, format: .xbgr8888)
    }

    /// Milliseconds the server waits to merge changes before sending them.
    public var deferUpdateMilliseconds: Int {
        get { Int(screen.pointee.deferUpdateTime) }
        set { screen.pointee.deferUpdateTime = Int32(newValue) }
    }

    public func markModified(x: Int, y: Int, width w: Int, height h: Int) {
        rfbMarkRectAsModified(screen, Int32(x), Int32(y), Int32(x + w), Int32(y + h))
    }

    /// Mirrors the text console (/dev/fb0), when there is one.
    public func mirrorTextConsole(path: String = "/dev/fb0") {
        if textConsole == nil {
            let t = Viewer.now()
            guard t - textConsoleTried > 5 else { return }
            textConsoleTried = t
            textConsole = try? FBDevDisplay(path: path)
        }
        if let fb = textConsole { mirror(fb.surface) }
    }

    /// Serves the text console alone until SIGTERM/SIGINT (no viewer).
    public func runStandalone() {
        for s in [SIGTERM, SIGINT, SIGHUP] { signal(s) { _ in Viewer.stopRequested = 1 } }
        signal(SIGPIPE, SIG_IGN)
        var last = 0.0
        while Viewer.stopRequested == 0 {
            let t = Viewer.now()
            if t - last >= 0.2 { last = t; mirrorTextConsole() }
            _ = processEvents(timeout: 0.05)
        }
    }
}
