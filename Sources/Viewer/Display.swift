#if canImport(Glibc)
import Glibc
#endif
import CViewer
import Platform

/// The local screen the viewer draws on.
public protocol LocalDisplay: AnyObject {
    /// What to draw into; may change after `acquire()`.
    var surface: Surface { get }
    var name: String { get }
    /// Tells the display a rectangle changed (drivers that shadow the buffer).
    func flush(x: Int, y: Int, width: Int, height: Int)
    /// Gives the screen back to the text console.
    func release()
    /// Takes the screen (again).
    func acquire() throws
}

/// Which display to open.
public enum DisplayChoice: Equatable, Sendable {
    /// DRM card, else fbdev.
    case automatic
    case drm(String)
    case fbdev(String)
    /// An in-memory screen of this size (no hardware; with `--dump`).
    case memory(width: Int, height: Int)

    /// Parses `auto`, `drm[:PATH]`, `fbdev[:PATH]`, `memory:WxH`.
    public init?(argument: String) {
        let parts = argument.split(separator: ":", maxSplits: 1).map(String.init)
        switch parts.first ?? "" {
        case "auto": self = .automatic
        case "drm": self = .drm(parts.count > 1 ? parts[1] : "/dev/dri/card0")
        case "fbdev": self = .fbdev(parts.count > 1 ? parts[1] : "/dev/fb0")
        case "memory":
            let wh = (parts.count > 1 ? parts[1] : "1024x768").split(separator: "x").compactMap { Int($0) }
            guard wh.count == 2, wh[0] > 0, wh[1] > 0, wh[0] <= 16384, wh[1] <= 16384 else { return nil }
            self = .memory(width: wh[0], height: wh[1])
        default: return nil
        }
    }

    public func open() throws -> LocalDisplay {
        switch self {
        case .drm(let p): return try DRMDisplay(path: p)
        case .fbdev(let p): return try FBDevDisplay(path: p)
        case .memory(let w, let h): return MemoryDisplay(width: w, height: h)
        case .automatic:
            var errors: [String] = []
            for card in Files.list("/dev/dri").filter({ $0.hasPrefix("card") }) {
                do { return try DRMDisplay(path: "/dev/dri/" + card) } catch { errors.append("\(error)") }
            }
            for fb in Files.list("/dev").filter({ $0.hasPrefix("fb") && $0.dropFirst(2).allSatisfy(\.isNumber) }) {
                do { return try FBDevDisplay(path: "/dev/" + fb) } catch { errors.append("\(error)") }
            }
            throw SystemError("no local display (/dev/dri/card*, /dev/fb*)" + (errors.isEmpty ? "" : ": " + errors.joined(separator: "; ")), errno: ENODEV)
        }
    }
}

extension PixelFormat {
    init(_ info: cb_display_info) {
        self.init(bitsPerPixel: Int(info.bpp),
                  red: .init(shift: Int(info.red_offset), bits: Int(info.red_length)),
                  green: .init(shift: Int(info.green_offset), bits: Int(info.green_length)),
                  blue: .init(shift: Int(info.blue_offset), bits: Int(info.blue_length)))
    }
}

/// A DRM dumb buffer scanned out on the first connected connector at its
/// preferred mode (bochs, simpledrm, virtio-gpu, i915, amdgpu…).
public final class DRMDisplay: LocalDisplay {
    private var info = cb_display_info()
    public let path: String
    public private(set) var surface: Surface
    public var name: String { "drm \(path) \(surface.width)x\(surface.height)" }

    public init(path: String) throws {
        self.path = path
        let rc = cb_drm_open(path, &info)
        if rc < 0 { throw SystemError("open DRM display \(path)", errno: -rc) }
        surface = DRMDisplay.surface(info)
    }

    private static func surface(_ i: cb_display_info) -> Surface {
        Surface(base: i.map, width: Int(i.width), height: Int(i.height), stride: Int(i.stride), format: PixelFormat(i))
    }

    deinit { cb_drm_close(&info) }

    public func flush(x: Int, y: Int, width: Int, height: Int) {
        if info.fd >= 0 { _ = cb_drm_dirty(&info, UInt32(x), UInt32(y), UInt32(width), UInt32(height)) }
    }

    public func release() { cb_drm_close(&info) }

    public func acquire() throws {
        if info.fd >= 0 {
            _ = cb_drm_show(&info)
            return
        }
        let rc = cb_drm_open(path, &info)
        if rc < 0 { throw SystemError("open DRM display \(path)", errno: -rc) }
        surface = DRMDisplay.surface(info)
    }
}

/// A Linux framebuffer device (efifb, vesafb, simplefb, DRM fbdev emulation).
/// The text console shares it: the viewer puts the VT in graphics mode while
/// it draws.
public final class FBDevDisplay: LocalDisplay {
    private var info = cb_display_info()
    public let path: String
    public let surface: Surface
    public var name: String { "fbdev \(path) \(surface.width)x\(surface.height) \(surface.format.bitsPerPixel)bpp" }

    public init(path: String) throws {
        self.path = path
        let rc = cb_fb_open(path, &info)
        if rc < 0 { throw SystemError("open framebuffer \(path)", errno: -rc) }
        surface = Surface(base: info.map + Int(info.offset), width: Int(info.width), height: Int(info.height),
                          stride: Int(info.stride), format: PixelFormat(info))
    }

    deinit { cb_fb_close(&info) }
    public func flush(x: Int, y: Int, width: Int, height: Int) {}
    public func release() {}
    public func acquire() throws {}
}

/// A screen in memory: for hosts without a display, tests and benchmarks.
public final class MemoryDisplay: LocalDisplay {
    public let buffer: MemoryFramebuffer
    public var surface: Surface { buffer.surface }
    public var name: String { "memory \(surface.width)x\(surface.height)" }
    public private(set) var released = false
    public init(width: Int, height: Int, format: PixelFormat = .xrgb8888) {
        buffer = MemoryFramebuffer(width: width, height: height, format: format)
    }
    public func flush(x: Int, y: Int, width: Int, height: Int) {}
    public func release() { released = true; surface.clear() }
    public func acquire() throws { released = false }
}
