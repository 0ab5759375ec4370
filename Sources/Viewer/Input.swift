#if canImport(Glibc)
import Glibc
#endif
import CViewer
import Platform

/// One evdev event (struct input_event).
public struct InputEvent: Equatable, Sendable {
    public var type: UInt16, code: UInt16, value: Int32
    public init(type: UInt16, code: UInt16, value: Int32) { self.type = type; self.code = code; self.value = value }
    public static let synType: UInt16 = 0, keyType: UInt16 = 1, relType: UInt16 = 2, absType: UInt16 = 3
}

/// Every keyboard and pointing device under /dev/input, opened as they come
/// and go (inotify), optionally grabbed so nothing else — the text console
/// included — sees their events.
public final class InputDevices {
    public struct Device {
        public var path: String
        public var fd: Int32
        public var name: String
        public var keyboard: Bool, relative: Bool, absolute: Bool
        public var absX: ClosedRange<Int32>, absY: ClosedRange<Int32>
    }

    public let directory: String
    public private(set) var devices: [Int32: Device] = [:]
    private var inotify: Int32 = -1
    public private(set) var grabbed = false

    public init(directory: String = "/dev/input") {
        self.directory = directory
        inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if inotify >= 0 {
            let mask = UInt32(IN_CREATE) | UInt32(IN_ATTRIB) | UInt32(IN_DELETE) | UInt32(IN_MOVED_TO)
            if inotify_add_watch(inotify, directory, mask) < 0 {
                Log.warning("input: cannot watch \(directory) for new devices: \(String(cString: strerror(currentErrno())))")
            }
        }
        scan()
    }

    deinit {
        for d in devices.values { close(d.fd) }
        if inotify >= 0 { close(inotify) }
    }

    /// Descriptors to poll: the hotplug watch and every device.
    public var pollDescriptors: [Int32] { (inotify >= 0 ? [inotify] : []) + devices.keys.sorted() }
    public var hotplugDescriptor: Int32 { inotify }

    /// Opens devices not opened yet.
    public func scan() {
        let open = Set(devices.values.map(\.path))
        for name in Files.list(directory) where name.hasPrefix("event") {
            let path = directory + "/" + name
            if !open.contains(path) { add(path) }
        }
    }

    private func add(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return }
        var caps = cb_evdev_caps()
        guard cb_evdev_caps(fd, &caps) == 0, caps.keyboard != 0 || ((caps.relative != 0 || caps.absolute != 0) && caps.buttons != 0) else {
            close(fd); return
        }
        let name = withUnsafeBytes(of: caps.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let d = Device(path: path, fd: fd, name: name, keyboard: caps.keyboard != 0, relative: caps.relative != 0,
                       absolute: caps.absolute != 0,
                       absX: caps.abs_x_min...max(caps.abs_x_min + 1, caps.abs_x_max),
                       absY: caps.abs_y_min...max(caps.abs_y_min + 1, caps.abs_y_max))
        devices[fd] = d
        if grabbed { _ = cb_evdev_grab(fd, 1) }
        Log.info("input: \(path) \"\(name)\"\(d.keyboard ? " keyboard" : "")\(d.relative ? " mouse" : "")\(d.absolute ? " tablet" : "")")
    }

    private func remove(_ fd: Int32) {
        if let d = devices.removeValue(forKey: fd) {
            close(fd)
            Log.info("input: \(d.path) gone")
        }
    }

    /// Grabs (or releases) every device, now and as they are plugged in.
    public func setGrab(_ on: Bool) {
        grabbed = on
        for fd in devices.keys { _ = cb_evdev_grab(fd, on ? 1 : 0) }
    }

    /// Handles readiness on one descriptor; returns the events read from a
    /// device (empty for the hotplug watch).
    public func read(_ fd: Int32) -> (device: Device?, events: [InputEvent]) {
        if fd == inotify {
            var buf = [UInt8](repeating: 0, count: 4096)
            while buf.withUnsafeMutableBytes({ Glibc.read(inotify, $0.baseAddress, $0.count) }) > 0 {}
            scan()
            // drop devices whose node is gone
            for (dfd, d) in devices where !Files.exists(d.path) { remove(dfd) }
            return (nil, [])
        }
        guard let dev = devices[fd] else { return (nil, []) }
        var events: [InputEvent] = []
        let size = 24  // struct input_event on 64-bit: timeval, u16 type, u16 code, s32 value
        var buf = [UInt8](repeating: 0, count: size * 64)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = currentErrno()
                if e == EINTR { continue }
                if e != EAGAIN { remove(fd) }
                break
            }
            if n == 0 { remove(fd); break }
            buf.withUnsafeBytes { p in
                var off = 0
                while off + size <= n {
                    events.append(InputEvent(type: p.loadUnaligned(fromByteOffset: off + 16, as: UInt16.self),
                                             code: p.loadUnaligned(fromByteOffset: off + 18, as: UInt16.self),
                                             value: p.loadUnaligned(fromByteOffset: off + 20, as: Int32.self)))
                    off += size
                }
            }
            if n < buf.count { break }
        }
        return (dev, events)
    }
}

/// The pointer on the local screen, fed by relative mice and absolute
/// devices; reports a position and button mask after each SYN_REPORT.
public struct PointerState: Sendable {
    public var x: Double = 0, y: Double = 0
    public var buttons = 0
    private var pendingWheel = 0
    private var changed = false

    public init() {}

    public static let btnLeft: UInt16 = 0x110, btnRight: UInt16 = 0x111, btnMiddle: UInt16 = 0x112, btnTouch: UInt16 = 0x14A
    static let relX: UInt16 = 0, relY: UInt16 = 1, relWheel: UInt16 = 8, absX: UInt16 = 0, absY: UInt16 = 1

    /// Feeds one event; returns the pointer report to send on SYN_REPORT
    /// (with a wheel click as a press of button 4 or 5 — the caller sends
    /// the release).
    public mutating func feed(_ e: InputEvent, absX: ClosedRange<Int32>, absY: ClosedRange<Int32>,
                              screenWidth: Int, screenHeight: Int) -> (x: Int, y: Int, buttons: Int, wheel: Int)? {
        let w = Double(max(1, screenWidth)), h = Double(max(1, screenHeight))
        switch e.type {
        case InputEvent.relType:
            switch e.code {
            case PointerState.relX: x = min(max(x + Double(e.value), 0), w - 1); changed = true
            case PointerState.relY: y = min(max(y + Double(e.value), 0), h - 1); changed = true
            case PointerState.relWheel: pendingWheel += Int(e.value); changed = true
            default: break
            }
        case InputEvent.absType:
            switch e.code {
            case PointerState.absX:
                let span = Double(absX.upperBound - absX.lowerBound)
                x = min(max(Double(e.value - absX.lowerBound) / span * (w - 1), 0), w - 1); changed = true
            case PointerState.absY:
                let span = Double(absY.upperBound - absY.lowerBound)
                y = min(max(Double(e.value - absY.lowerBound) / span * (h - 1), 0), h - 1); changed = true
            default: break
            }
        case InputEvent.keyType:
            let bit: Int
            switch e.code {
            case PointerState.btnLeft, PointerState.btnTouch: bit = 1
            case PointerState.btnMiddle: bit = 2
            case PointerState.btnRight: bit = 4
            default: return nil
            }
            if e.value != 0 { buttons |= bit } else { buttons &= ~bit }
            changed = true
        case InputEvent.synType where e.code == 0:
            guard changed else { return nil }
            changed = false
            let wheel = pendingWheel > 0 ? 8 : (pendingWheel < 0 ? 16 : 0)
            pendingWheel = 0
            return (Int(x.rounded()), Int(y.rounded()), buttons, wheel)
        default: break
        }
        return nil
    }
}
