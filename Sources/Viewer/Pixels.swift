/// A packed RGB pixel layout: bits per pixel and where each channel sits in
/// the little-endian pixel value (as fbdev's `fb_var_screeninfo` says).
public struct PixelFormat: Equatable, Sendable, CustomStringConvertible {
    public struct Channel: Equatable, Sendable {
        public var shift: Int, bits: Int
        public init(shift: Int, bits: Int) { self.shift = shift; self.bits = bits }
    }
    public var bitsPerPixel: Int
    public var red: Channel, green: Channel, blue: Channel

    public init(bitsPerPixel: Int, red: Channel, green: Channel, blue: Channel) {
        self.bitsPerPixel = bitsPerPixel
        self.red = red; self.green = green; self.blue = blue
    }

    public var bytesPerPixel: Int { (bitsPerPixel + 7) / 8 }

    /// 32 bpp, 0x00RRGGBB: DRM's XRGB8888, most fbdev drivers, and what the
    /// VNC client decodes into.
    public static let xrgb8888 = PixelFormat(bitsPerPixel: 32, red: .init(shift: 16, bits: 8), green: .init(shift: 8, bits: 8), blue: .init(shift: 0, bits: 8))
    /// 32 bpp, 0x00BBGGRR.
    public static let xbgr8888 = PixelFormat(bitsPerPixel: 32, red: .init(shift: 0, bits: 8), green: .init(shift: 8, bits: 8), blue: .init(shift: 16, bits: 8))
    /// 24 bpp, bytes B, G, R.
    public static let rgb888 = PixelFormat(bitsPerPixel: 24, red: .init(shift: 16, bits: 8), green: .init(shift: 8, bits: 8), blue: .init(shift: 0, bits: 8))
    /// 24 bpp, bytes R, G, B.
    public static let bgr888 = PixelFormat(bitsPerPixel: 24, red: .init(shift: 0, bits: 8), green: .init(shift: 8, bits: 8), blue: .init(shift: 16, bits: 8))
    /// 16 bpp, RRRRRGGGGGGBBBBB.
    public static let rgb565 = PixelFormat(bitsPerPixel: 16, red: .init(shift: 11, bits: 5), green: .init(shift: 5, bits: 6), blue: .init(shift: 0, bits: 5))

    /// Packs 8-bit channels (dropping low bits for narrower channels).
    @inline(__always) public func pack(r: UInt8, g: UInt8, b: UInt8) -> UInt32 {
        (UInt32(r) >> UInt32(8 - red.bits)) << UInt32(red.shift)
            | (UInt32(g) >> UInt32(8 - green.bits)) << UInt32(green.shift)
            | (UInt32(b) >> UInt32(8 - blue.bits)) << UInt32(blue.shift)
    }

    /// Unpacks to 8-bit channels, replicating the high bits into the low ones
    /// so full intensity stays 255.
    @inline(__always) public func unpack(_ p: UInt32) -> (r: UInt8, g: UInt8, b: UInt8) {
        @inline(__always) func ch(_ c: Channel) -> UInt8 {
            let mask = (UInt32(1) << UInt32(c.bits)) - 1
            let v = (p >> UInt32(c.shift)) & mask
            if c.bits >= 8 { return UInt8(truncatingIfNeeded: v >> UInt32(c.bits - 8)) }
            let up = v << UInt32(8 - c.bits)
            return UInt8(truncatingIfNeeded: up | (up >> UInt32(c.bits)))
        }
        return (ch(red), ch(green), ch(blue))
    }

    public var description: String {
        "\(bitsPerPixel)bpp r\(red.shift)/\(red.bits) g\(green.shift)/\(green.bits) b\(blue.shift)/\(blue.bits)"
    }
}

/// A CPU-writable picture: a mapped scan-out buffer or memory. The owner of
/// the memory keeps it alive while a `Surface` is used.
public struct Surface: @unchecked Sendable {
    public var base: UnsafeMutableRawPointer
    public var width: Int, height: Int
    /// Bytes per row (at least width × bytes per pixel).
    public var stride: Int
    public var format: PixelFormat

    public init(base: UnsafeMutableRawPointer, width: Int, height: Int, stride: Int, format: PixelFormat) {
        self.base = base; self.width = width; self.height = height; self.stride = stride; self.format = format
    }

    /// The pixel value at (x, y), in `format`.
    public func pixel(x: Int, y: Int) -> UInt32 {
        let p = base + y * stride + x * format.bytesPerPixel
        switch format.bytesPerPixel {
        case 4: return p.loadUnaligned(as: UInt32.self)
        case 2: return UInt32(p.loadUnaligned(as: UInt16.self))
        case 3:
            let b = p.assumingMemoryBound(to: UInt8.self)
            return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16
        default: return UInt32(p.load(as: UInt8.self))
        }
    }

    public func rgb(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) { format.unpack(pixel(x: x, y: y)) }

    /// Fills every visible pixel with black.
    public func clear() {
        for row in 0..<height { (base + row * stride).initializeMemory(as: UInt8.self, repeating: 0, count: width * format.bytesPerPixel) }
    }

    /// Fills a rectangle with an 8-bit RGB colour.
    public func fill(x: Int, y: Int, width w: Int, height h: Int, r: UInt8, g: UInt8, b: UInt8) {
        let v = format.pack(r: r, g: g, b: b)
        let x0 = max(0, x), y0 = max(0, y), x1 = min(width, x + w), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        for row in y0..<y1 {
            let line = base + row * stride
            for col in x0..<x1 { PixelWriter.store(v, at: line + col * format.bytesPerPixel, bytes: format.bytesPerPixel) }
        }
    }

    /// The picture as a binary PPM (P6), for debugging and tests.
    public func ppm() -> [UInt8] {
        var out = Array("P6\n\(width) \(height)\n255\n".utf8)
        out.reserveCapacity(out.count + width * height * 3)
        for row in 0..<height {
            for col in 0..<width {
                let c = rgb(x: col, y: row)
                out.append(c.r); out.append(c.g); out.append(c.b)
            }
        }
        return out
    }
}

enum PixelWriter {
    @inline(__always) static func store(_ v: UInt32, at p: UnsafeMutableRawPointer, bytes: Int) {
        switch bytes {
        case 4: p.storeBytes(of: v, as: UInt32.self)
        case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: v), as: UInt16.self)
        case 3:
            p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
            (p + 1).storeBytes(of: UInt8(truncatingIfNeeded: v >> 8), as: UInt8.self)
            (p + 2).storeBytes(of: UInt8(truncatingIfNeeded: v >> 16), as: UInt8.self)
        default: p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
        }
    }
}

/// A picture in ordinary memory; owns its bytes. Used as the in-memory
/// display, by tests, and as the VNC client's and server's framebuffers.
public final class MemoryFramebuffer: @unchecked Sendable {
    public let surface: Surface
    public let byteCount: Int

    public init(width: Int, height: Int, format: PixelFormat = .xrgb8888, stride: Int? = nil) {
        let s = stride ?? width * format.bytesPerPixel
        precondition(s >= width * format.bytesPerPixel, "stride shorter than a row")
        byteCount = max(1, s * height)
        let p = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 16)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        surface = Surface(base: p, width: width, height: height, stride: s, format: format)
    }

    deinit { surface.base.deallocate() }
}
