#if canImport(Glibc)
import Glibc
#endif
import CViewer
import Platform

/// The Linux virtual terminal the viewer shares the screen with. In graphics
/// mode the text console stops drawing; back in text mode it redraws itself
/// (the host's status console).
public final class VirtualTerminal {
    public let number: Int
    private let fd: Int32
    public private(set) var graphics = false

    /// The VT active now, or nil when there are no VTs (no /dev/tty0).
    public init?() {
        let n = cb_vt_active()
        guard n > 0 else { return nil }
        let f = open("/dev/tty\(n)", O_RDWR | O_CLOEXEC | O_NOCTTY)
        guard f >= 0 else { return nil }
        number = Int(n); fd = f
    }

    deinit {
        if graphics { _ = cb_vt_set_graphics(fd, 0) }
        close(fd)
    }

    /// Switches back to this VT if another one is shown (the kernel's own
    /// Ctrl+Alt+Fn handling may have switched while input was not grabbed).
    public func activate() {
        if cb_vt_active() != Int32(number) { _ = cb_vt_activate(Int32(number)) }
    }

    public func setGraphics(_ on: Bool) {
        let rc = cb_vt_set_graphics(fd, on ? 1 : 0)
        if rc < 0 { Log.warning("tty\(number): cannot set \(on ? "graphics" : "text") mode: \(String(cString: strerror(-rc)))") }
        graphics = on
    }
}
