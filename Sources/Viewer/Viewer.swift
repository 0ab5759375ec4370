#if canImport(Glibc)
import Glibc
#endif
import Platform

/// The thin client: shows one VM's screen on the local display and feeds it
/// the local keyboard and mouse.
///
/// - The guest is scaled to the screen keeping its aspect ratio, with black
///   bars; a guest resolution change re-lays the picture out.
/// - Every keyboard and mouse under /dev/input is used, including ones
///   plugged in later, and grabbed while the guest is shown. The pointer is
///   absolute (the VM has a USB tablet), mapped back through the scaling.
/// - When the VNC socket goes away (guest reboot, VM restart) the viewer
///   reconnects with backoff, keeping the last picture meanwhile.
/// - **Ctrl+Alt+F12** switches between the guest and the host's status
///   console (the text console of the VT the viewer started on) and back.
///   The guest never receives F12 of the hotkey; the Ctrl and Alt it already
///   saw pressed are released in the guest when the switch happens.
public final class Viewer {
    public struct Options: Sendable {
        public var socketPath: String
        public var display: DisplayChoice = .automatic
        /// Write the local screen as a PPM here after changes (debugging).
        public var dumpPath: String?
        public var useInput = true
        public var inputDirectory = "/dev/input"
        /// Share the screen with the text console of the current VT.
        public var useTerminal = true
        /// Export the local screen over VNC at this address ("127.0.0.1:5900").
        public var exportConsole: String?
        /// Keys to type once the guest is shown (see `Viewer.keyEvents(typing:)`);
        /// for scripted demos and tests on machines without a keyboard.
        public var typeText: String?
        public init(socketPath: String) { self.socketPath = socketPath }
    }

    public enum Mode: Sendable { case guest, host }

    public let options: Options
    public private(set) var mode: Mode = .guest
    private let display: LocalDisplay
    private let terminal: VirtualTerminal?
    private let input: InputDevices?
    private var client: VNCClient?
    private var blitter: ScaledBlitter?
    private var hotkey = HotkeyDetector()
    private var keys = KeyTranslator()
    private var pointer = PointerState()
    /// Linux keycodes held down in the guest (released on a switch).
    private var guestKeysDown: [UInt16: GuestKey] = [:]
    private var dirty: (x0: Int, y0: Int, x1: Int, y1: Int)?
    private var nextConnect: Double = 0
    private var backoff: Double = 0.25
    private var lastDump: Double = 0
    private var dumpPending = false
    private var console: HostConsoleServer?
    private var lastMirror: Double = 0
    private var typed = false
    /// The local screen.
    public var screen: Surface { display.surface }
    public var connected: Bool { client != nil }
    /// Frames drawn (for tests and the benchmark).
    public private(set) var framesDrawn = 0

    nonisolated(unsafe) static var stopRequested: Int32 = 0

    public init(options: Options) throws {
        self.options = options
        display = try options.display.open()
        Log.info("display: \(display.name)")
        if options.useTerminal, case .memory = options.display {
            terminal = nil
        } else {
            terminal = options.useTerminal ? VirtualTerminal() : nil
        }
        input = options.useInput ? InputDevices(directory: options.inputDirectory) : nil
        if let addr = options.exportConsole {
            console = try HostConsoleServer(listen: addr)
            Log.info("console: exported over VNC on \(addr)")
        }
        let s = display.surface
        pointer.x = Double(s.width / 2); pointer.y = Double(s.height / 2)
        terminal?.setGraphics(true)
        s.clear()
        display.flush(x: 0, y: 0, width: s.width, height: s.height)
        input?.setGrab(true)
    }

    deinit {
        input?.setGrab(false)
        display.release()
        terminal?.setGraphics(false)
    }

    static func now() -> Double { Clock.monotonic() }

    /// Runs until SIGTERM, SIGINT or SIGHUP.
    public func run() {
        for s in [SIGTERM, SIGINT, SIGHUP] {
            signal(s) { _ in Viewer.stopRequested = 1 }
        }
        signal(SIGPIPE, SIG_IGN)
        Log.info("viewer: showing \(options.socketPath); Ctrl+Alt+F12 switches to the host console")
        while Viewer.stopRequested == 0 {
            step(timeout: 0.1)
        }
        Log.info("viewer: stopping")
    }

    /// One turn of the loop: connect if due, wait for input or guest
    /// updates, handle them.
    public func step(timeout: Double) {
        let t = Viewer.now()
        if client == nil && t >= nextConnect { connect() }
        var fds: [pollfd] = []
        if let c = client { fds.append(pollfd(fd: c.fileDescriptor, events: Int16(POLLIN), revents: 0)) }
        for fd in input?.pollDescriptors ?? [] { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        var wait = timeout
        if client == nil { wait = min(wait, max(0, nextConnect - t)) }
        if console != nil { wait = min(wait, 0.05) }
        let n = poll(&fds, nfds_t(fds.count), Int32(wait * 1000))
        if n > 0 {
            for p in fds where p.revents != 0 {
                if let c = client, p.fd == c.fileDescriptor {
                    do { try c.process() } catch { disconnected("\(error)") }
                } else if let input {
                    let (dev, events) = input.read(p.fd)
                    if let dev { handle(events, absX: dev.absX, absY: dev.absY) }
                }
            }
        }
        flushDirty()
        if !typed, let text = options.typeText, framesDrawn > 0 {
            typed = true
            inject(Viewer.keyEvents(typing: text))
        }
        serviceConsole()
        dumpIfDue()
    }

    private func connect() {
        guard Files.exists(options.socketPath) || !options.socketPath.hasPrefix("/") else {
            scheduleReconnect(); return
        }
        do {
            let c = try VNCClient(socket: options.socketPath, connectTimeout: 3)
            c.onResize = { [unowned self] w, h in self.guestResized(w, h) }
            c.onUpdate = { [unowned self] x, y, w, h in self.markDirty(x, y, w, h) }
            c.onFrameDone = { [unowned self] in self.flushDirty() }
            client = c
            backoff = 0.25
            Log.info("viewer: connected to \(options.socketPath) (\(c.width)x\(c.height) \"\(c.desktopName)\")")
            guestResized(c.width, c.height)
        } catch {
            Log.debug("viewer: \(error)")
            scheduleReconnect()
        }
    }

    private func scheduleReconnect() {
        nextConnect = Viewer.now() + backoff
        backoff = min(backoff * 2, 2)
    }

    private func disconnected(_ why: String) {
        Log.info("viewer: guest display disconnected (\(why)); reconnecting")
        releaseGuestKeys()
        client = nil
        dirty = nil
        backoff = 0.25
        scheduleReconnect()
    }

    private func guestResized(_ w: Int, _ h: Int) {
        guard w > 0, h > 0 else { return }
        let s = display.surface
        if let b = blitter, b.box.sourceWidth == w, b.box.sourceHeight == h, b.box.screenWidth == s.width,
           b.box.screenHeight == s.height, b.destinationFormat == s.format {
            markDirty(0, 0, w, h); return
        }
        blitter = ScaledBlitter(sourceWidth: w, sourceHeight: h, destination: s)
        Log.info("viewer: guest screen \(blitter!.box)")
        if mode == .guest {
            blitter!.paintBars(s)
            display.flush(x: 0, y: 0, width: s.width, height: s.height)
        }
        markDirty(0, 0, w, h)
    }

    private func markDirty(_ x: Int, _ y: Int, _ w: Int, _ h: Int) {
        guard w > 0, h > 0 else { return }
        if let d = dirty {
            dirty = (min(d.x0, x), min(d.y0, y), max(d.x1, x + w), max(d.y1, y + h))
        } else {
            dirty = (x, y, x + w, y + h)
        }
    }

    /// Draws what changed since the last frame onto the local screen.
    private func flushDirty() {
        guard mode == .guest, let d = dirty, let c = client, let fb = c.framebuffer, let b = blitter,
              b.box.sourceWidth == fb.width, b.box.sourceHeight == fb.height else { return }
        dirty = nil
        let r = b.draw(from: fb, x: d.x0, y: d.y0, width: d.x1 - d.x0, height: d.y1 - d.y0, to: display.surface)
        if r.width > 0 && r.height > 0 { display.flush(x: r.x, y: r.y, width: r.width, height: r.height) }
        framesDrawn += 1
        dumpPending = true
    }

    // MARK: input

    /// Handles events as if they came from a local keyboard or mouse.
    public func inject(_ events: [InputEvent]) {
        handle(events, absX: 0...32767, absY: 0...32767)
    }

    /// Evdev key events that type `text`: characters of a US keyboard,
    /// `{enter}`, and `{hotkey}` for Ctrl+Alt+F12. A newline is Enter.
    public static func keyEvents(typing text: String) -> [InputEvent] {
        var out: [InputEvent] = []
        func tap(_ code: UInt16, shift: Bool = false) {
            if shift { out.append(InputEvent(type: 1, code: Keymap.keyLeftShift, value: 1)) }
            out.append(InputEvent(type: 1, code: code, value: 1))
            out.append(InputEvent(type: 1, code: code, value: 0))
            if shift { out.append(InputEvent(type: 1, code: Keymap.keyLeftShift, value: 0)) }
        }
        var rest = Substring(text)
        while let c = rest.first {
            if rest.hasPrefix("{enter}") { tap(28); rest = rest.dropFirst(7); continue }
            if rest.hasPrefix("{hotkey}") {
                for (code, v) in [(Keymap.keyLeftCtrl, 1), (Keymap.keyLeftAlt, 1), (Keymap.keyF12, 1), (Keymap.keyF12, 0),
                                  (Keymap.keyLeftAlt, 0), (Keymap.keyLeftCtrl, 0)] as [(UInt16, Int32)] {
                    out.append(InputEvent(type: 1, code: code, value: v))
                }
                rest = rest.dropFirst(8); continue
            }
            rest = rest.dropFirst()
            if c == "\n" { tap(28); continue }
            if let sym = c.unicodeScalars.first?.value, c.unicodeScalars.count == 1, let k = Keymap.keycodes[sym] {
                tap(k.code, shift: k.shift)
            }
        }
        return out
    }

    private func handle(_ events: [InputEvent], absX: ClosedRange<Int32>, absY: ClosedRange<Int32>) {
        for e in events {
            if e.type == InputEvent.keyType && e.code < 0x100 {
                key(e.code, e.value)
            } else if mode == .guest {
                let s = display.surface
                if let p = pointer.feed(e, absX: absX, absY: absY, screenWidth: s.width, screenHeight: s.height) {
                    sendPointer(p.x, p.y, p.buttons, wheel: p.wheel)
                }
            }
        }
    }

    private func sendPointer(_ sx: Int, _ sy: Int, _ buttons: Int, wheel: Int) {
        guard let c = client, let b = blitter else { return }
        let g = b.box.guestPoint(screenX: sx, screenY: sy)
        c.sendPointer(x: g.x, y: g.y, buttons: buttons | wheel)
        if wheel != 0 { c.sendPointer(x: g.x, y: g.y, buttons: buttons) }
    }

    private func key(_ code: UInt16, _ value: Int32) {
        switch hotkey.feed(code: code, value: value) {
        case .toggle:
            toggle()
            return
        case .swallow:
            return
        case .forward:
            break
        }
        guard mode == .guest else { return }
        guard let k = keys.translate(code: code, value: value) else { return }
        if k.down { guestKeysDown[code] = k } else { guestKeysDown[code] = nil }
        client?.send(k)
    }

    private func releaseGuestKeys() {
        for (_, var k) in guestKeysDown {
            k.down = false
            client?.send(k)
        }
        guestKeysDown = [:]
        keys.reset()
    }

    /// Switches between the guest and the host console.
    public func toggle() {
        switch mode {
        case .guest: showHost()
        case .host: showGuest()
        }
    }

    public func showHost() {
        guard mode == .guest else { return }
        releaseGuestKeys()
        mode = .host
        input?.setGrab(false)
        display.release()
        terminal?.setGraphics(false)
        dumpPending = true
        Log.info("viewer: host console shown (Ctrl+Alt+F12 returns to the guest)")
    }

    public func showGuest() {
        guard mode == .host else { return }
        terminal?.activate()
        terminal?.setGraphics(true)
        do {
            try display.acquire()
        } catch {
            Log.error("viewer: cannot take the display back: \(error)")
            terminal?.setGraphics(false)
            return
        }
        mode = .guest
        input?.setGrab(true)
        let s = display.surface
        s.clear()
        blitter = nil
        if let c = client { guestResized(c.width, c.height) }
        display.flush(x: 0, y: 0, width: s.width, height: s.height)
        Log.info("viewer: guest shown")
    }

    // MARK: debugging and export

    private func dumpIfDue() {
        guard let path = options.dumpPath, dumpPending || lastDump == 0 else { return }
        let t = Viewer.now()
        guard t - lastDump >= 0.5 else { return }
        lastDump = t
        dumpPending = false
        try? Files.writeAtomically(path, display.surface.ppm())
    }

    private func serviceConsole() {
        guard let console else { return }
        let t = Viewer.now()
        if t - lastMirror >= 0.2 {
            lastMirror = t
            if mode == .guest {
                console.mirror(display.surface)
            } else {
                console.mirrorTextConsole()
            }
        }
        for ev in console.processEvents() {
            switch ev {
            case .key(let sym, let down):
                // without a virtual keyboard, remote keys go to the guest
                if !console.hasVirtualKeyboard, mode == .guest, let c = client {
                    c.send(GuestKey(keysym: sym, qnum: Keymap.keycodes[sym].flatMap { Keymap.qnum(for: $0.code) }, down: down))
                }
            case .pointer(let x, let y, let buttons):
                if mode == .guest { sendPointer(x, y, buttons, wheel: 0) }
            }
        }
    }
}
