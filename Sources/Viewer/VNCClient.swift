#if canImport(Glibc)
import Glibc
#endif
import CVNC
import Platform
import CVNCLoader

/// libvncclient and libvncserver are loaded on first use, not when cloudbios
/// starts: in the PE they are in the payload (CVNCLoader/vnc.c).
public enum VNCLibrary {
    public static func load() throws {
        if let why = Payload.waitUsable() { throw VNCError("the VNC libraries are in the payload, which is unavailable: \(why)") }
        var err = [CChar](repeating: 0, count: 512)
        if cb_vnc_load(&err, err.count) == 0 {
            throw VNCError(String(nulTerminated: err))
        }
    }
}

/// A failure of the VNC connection, with what was being done.
public struct VNCError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A libvncclient connection to a VM's VNC Unix socket. Owns the `rfbClient`
/// and frees it in `deinit`. The guest screen is decoded into `framebuffer`
/// as XRGB8888; changes are reported through the callbacks from `process()`.
/// Not thread-safe: use it from one thread.
public final class VNCClient {
    private var client: UnsafeMutablePointer<rfbClient>?
    private let encodings: UnsafeMutablePointer<CChar>
    /// The guest screen size changed (the framebuffer was reallocated).
    public var onResize: ((Int, Int) -> Void)?
    /// A rectangle of the framebuffer changed.
    public var onUpdate: ((Int, Int, Int, Int) -> Void)?
    /// The server finished one framebuffer update message.
    public var onFrameDone: (() -> Void)?

    private static var tag: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 0x4342_5643)! }

    /// Connects and completes the RFB handshake. `path` is a Unix socket (or
    /// "host:port" for TCP, handy for debugging).
    public init(socket path: String, connectTimeout: UInt32 = 5) throws {
        try VNCLibrary.load()
        cb_vnc_client_logging(Log.verbose ? 1 : 0)
        encodings = strdup("copyrect raw")
        guard let cl = rfbGetClient(8, 3, 4) else { free(encodings); throw VNCError("cannot allocate a VNC client") }
        // XRGB8888 in memory, as DRM and most fbdev drivers want it
        cl.pointee.format.redShift = 16
        cl.pointee.format.greenShift = 8
        cl.pointee.format.blueShift = 0
        cl.pointee.appData.useRemoteCursor = 0
        cl.pointee.appData.encodingsString = UnsafePointer(encodings)
        cl.pointee.appData.shareDesktop = 1
        cl.pointee.canHandleNewFBSize = 1
        cl.pointee.connectTimeout = connectTimeout
        cl.pointee.readTimeout = 15
        var hostPort = 0
        if path.hasPrefix("/") {
            cl.pointee.serverHost = strdup(path)
        } else if let colon = path.lastIndex(of: ":"), let p = Int(path[path.index(after: colon)...]) {
            cl.pointee.serverHost = strdup(String(path[..<colon]))
            hostPort = p
        } else {
            cl.pointee.serverHost = strdup(path)
        }
        cl.pointee.serverPort = Int32(hostPort)
        cl.pointee.MallocFrameBuffer = { cl in
            guard let cl else { return 0 }
            let w = Int(cl.pointee.width), h = Int(cl.pointee.height)
            free(cl.pointee.frameBuffer)
            cl.pointee.frameBuffer = nil
            guard w > 0, h > 0, let p = calloc(w * h, 4) else { return 0 }
            cl.pointee.frameBuffer = p.assumingMemoryBound(to: UInt8.self)
            VNCClient.owner(cl)?.onResize?(w, h)
            return 1
        }
        cl.pointee.GotFrameBufferUpdate = { cl, x, y, w, h in
            guard let cl else { return }
            VNCClient.owner(cl)?.onUpdate?(Int(x), Int(y), Int(w), Int(h))
        }
        cl.pointee.FinishedFrameBufferUpdate = { cl in
            guard let cl else { return }
            VNCClient.owner(cl)?.onFrameDone?()
        }
        client = cl
        rfbClientSetClientData(cl, VNCClient.tag, Unmanaged.passUnretained(self).toOpaque())
        // rfbInitClient frees the client when it fails
        if rfbInitClient(cl, nil, nil) == 0 {
            client = nil
            throw VNCError("cannot connect to VNC server at \(path)")
        }
    }

    deinit {
        if let client {
            free(client.pointee.frameBuffer)
            client.pointee.frameBuffer = nil
            rfbClientCleanup(client)
        }
        free(encodings)
    }

    private static func owner(_ cl: UnsafeMutablePointer<rfbClient>) -> VNCClient? {
        guard let p = rfbClientGetClientData(cl, tag) else { return nil }
        return Unmanaged<VNCClient>.fromOpaque(p).takeUnretainedValue()
    }

    /// The socket to poll for readability.
    public var fileDescriptor: Int32 { client.map { $0.pointee.sock } ?? -1 }
    public var width: Int { Int(client?.pointee.width ?? 0) }
    public var height: Int { Int(client?.pointee.height ?? 0) }
    public var desktopName: String { client?.pointee.desktopName.map { String(cString: $0) } ?? "" }

    /// The guest screen (XRGB8888); valid until the next `process()`.
    public var framebuffer: Surface? {
        guard let c = client, let fb = c.pointee.frameBuffer, c.pointee.width > 0 else { return nil }
        let w = Int(c.pointee.width)
        return Surface(base: UnsafeMutableRawPointer(fb), width: w, height: Int(c.pointee.height), stride: w * 4, format: .xrgb8888)
    }

    /// Handles the messages the server sent (call when the socket is
    /// readable). Throws when the connection is gone.
    public func process() throws {
        guard let c = client else { throw VNCError("not connected") }
        repeat {
            if HandleRFBServerMessage(c) == 0 { throw VNCError("VNC connection closed") }
        } while c.pointee.buffered > 0
    }

    /// Asks for a full (non-incremental) update.
    public func requestFullUpdate() {
        guard let c = client else { return }
        _ = SendFramebufferUpdateRequest(c, 0, 0, c.pointee.width, c.pointee.height, 0)
    }

    /// Sends a key. Uses QEMU's extended key event (a scancode, so the
    /// guest's keyboard layout applies) when the server offers it.
    @discardableResult
    public func send(_ key: GuestKey) -> Bool {
        guard let c = client else { return false }
        if let q = key.qnum, SendExtendedKeyEvent(c, key.keysym, q, key.down ? 1 : 0) != 0 { return true }
        return SendKeyEvent(c, key.keysym, key.down ? 1 : 0) != 0
    }

    /// Sends an absolute pointer position (guest pixels) and button mask
    /// (1 left, 2 middle, 4 right, 8/16 wheel up/down).
    @discardableResult
    public func sendPointer(x: Int, y: Int, buttons: Int) -> Bool {
        guard let c = client else { return false }
        return SendPointerEvent(c, Int32(x), Int32(y), Int32(buttons)) != 0
    }
}
