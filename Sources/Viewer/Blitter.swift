#if canImport(Glibc)
import Glibc
#endif

/// Scales and converts a 32-bit XRGB8888 picture (the guest screen as the VNC
/// client decodes it) onto a local surface of any size and pixel format,
/// through a `Letterbox`. Nearest-neighbour sampling with precomputed column
/// and row tables; only the changed rectangle is redrawn.
public final class ScaledBlitter {
    public let box: Letterbox
    public let destinationFormat: PixelFormat
    // screen column i (relative to box.x) -> source column; likewise rows
    private let xmap: UnsafeMutablePointer<Int32>
    private let ymap: UnsafeMutablePointer<Int32>
    // source column s -> the first screen column i with xmap[i] >= s (size sourceWidth + 1)
    private let xFirst: UnsafeMutablePointer<Int32>
    private let yFirst: UnsafeMutablePointer<Int32>
    private let identityX: Bool

    public init(sourceWidth: Int, sourceHeight: Int, screenWidth: Int, screenHeight: Int, destinationFormat: PixelFormat) {
        let b = Letterbox(sourceWidth: sourceWidth, sourceHeight: sourceHeight, screenWidth: screenWidth, screenHeight: screenHeight)
        box = b
        self.destinationFormat = destinationFormat
        xmap = .allocate(capacity: b.width)
        ymap = .allocate(capacity: b.height)
        xFirst = .allocate(capacity: b.sourceWidth + 1)
        yFirst = .allocate(capacity: b.sourceHeight + 1)
        for i in 0..<b.width { xmap[i] = Int32(b.sourceColumn(i)) }
        for j in 0..<b.height { ymap[j] = Int32(b.sourceRow(j)) }
        ScaledBlitter.invert(xmap, count: b.width, into: xFirst, sources: b.sourceWidth)
        ScaledBlitter.invert(ymap, count: b.height, into: yFirst, sources: b.sourceHeight)
        identityX = b.width == b.sourceWidth
    }

    public convenience init(sourceWidth: Int, sourceHeight: Int, destination: Surface) {
        self.init(sourceWidth: sourceWidth, sourceHeight: sourceHeight, screenWidth: destination.width,
                  screenHeight: destination.height, destinationFormat: destination.format)
    }

    deinit {
        xmap.deallocate(); ymap.deallocate(); xFirst.deallocate(); yFirst.deallocate()
    }

    private static func invert(_ map: UnsafeMutablePointer<Int32>, count: Int, into first: UnsafeMutablePointer<Int32>, sources: Int) {
        var i = 0
        for s in 0...sources {
            while i < count && Int(map[i]) < s { i += 1 }
            first[s] = Int32(i)
        }
    }

    /// The screen rectangle that shows source rectangle (x, y, w, h).
    public func screenRect(x: Int, y: Int, width: Int, height: Int) -> (x: Int, y: Int, width: Int, height: Int) {
        let sx0 = min(max(x, 0), box.sourceWidth), sx1 = min(max(x + width, 0), box.sourceWidth)
        let sy0 = min(max(y, 0), box.sourceHeight), sy1 = min(max(y + height, 0), box.sourceHeight)
        let i0 = Int(xFirst[sx0]), i1 = Int(xFirst[sx1])
        let j0 = Int(yFirst[sy0]), j1 = Int(yFirst[sy1])
        return (box.x + i0, box.y + j0, i1 - i0, j1 - j0)
    }

    /// Paints the bars around the guest picture black.
    public func paintBars(_ dst: Surface) {
        precondition(dst.width == box.screenWidth && dst.height == box.screenHeight, "surface size changed")
        dst.fill(x: 0, y: 0, width: dst.width, height: box.y, r: 0, g: 0, b: 0)
        dst.fill(x: 0, y: box.y + box.height, width: dst.width, height: dst.height - box.y - box.height, r: 0, g: 0, b: 0)
        dst.fill(x: 0, y: box.y, width: box.x, height: box.height, r: 0, g: 0, b: 0)
        dst.fill(x: box.x + box.width, y: box.y, width: dst.width - box.x - box.width, height: box.height, r: 0, g: 0, b: 0)
    }

    /// Draws source rectangle (x, y, w, h) of `src` (XRGB8888, the size given
    /// at init) scaled onto `dst`. Returns the screen rectangle written.
    @discardableResult
    public func draw(from src: Surface, x: Int, y: Int, width: Int, height: Int, to dst: Surface) -> (x: Int, y: Int, width: Int, height: Int) {
        precondition(src.width == box.sourceWidth && src.height == box.sourceHeight && src.format.bytesPerPixel == 4, "source size changed")
        precondition(dst.width == box.screenWidth && dst.height == box.screenHeight, "surface size changed")
        let r = screenRect(x: x, y: y, width: width, height: height)
        guard r.width > 0, r.height > 0 else { return r }
        let i0 = r.x - box.x, i1 = i0 + r.width
        let j0 = r.y - box.y, j1 = j0 + r.height
        let bpp = dst.format.bytesPerPixel
        let rowBytes = r.width * bpp
        let same = dst.format == .xrgb8888 || (dst.format.bitsPerPixel == 32 && dst.format.red == PixelFormat.xrgb8888.red
            && dst.format.green == PixelFormat.xrgb8888.green && dst.format.blue == PixelFormat.xrgb8888.blue)
        let conv = Converter(dst.format)
        for j in j0..<j1 {
            let drow = dst.base + (box.y + j) * dst.stride + r.x * bpp
            let sy = Int(ymap[j])
            if j > j0 && Int(ymap[j - 1]) == sy {
                memcpy(drow, drow - dst.stride, rowBytes)
                continue
            }
            let srow = (src.base + sy * src.stride).assumingMemoryBound(to: UInt32.self)
            if same && identityX {
                memcpy(drow, srow + i0, rowBytes)
                continue
            }
            switch bpp {
            case 4:
                let d = drow.assumingMemoryBound(to: UInt32.self)
                if same {
                    for i in i0..<i1 { d[i - i0] = srow[Int(xmap[i])] }
                } else {
                    for i in i0..<i1 { d[i - i0] = conv.convert(srow[Int(xmap[i])]) }
                }
            case 2:
                let d = drow.assumingMemoryBound(to: UInt16.self)
                if dst.format == .rgb565 {
                    for i in i0..<i1 {
                        let p = srow[Int(xmap[i])]
                        d[i - i0] = UInt16(truncatingIfNeeded: ((p >> 8) & 0xF800) | ((p >> 5) & 0x07E0) | ((p >> 3) & 0x001F))
                    }
                } else {
                    for i in i0..<i1 { d[i - i0] = UInt16(truncatingIfNeeded: conv.convert(srow[Int(xmap[i])])) }
                }
            default:
                let d = drow.assumingMemoryBound(to: UInt8.self)
                var o = 0
                for i in i0..<i1 {
                    let v = conv.convert(srow[Int(xmap[i])])
                    d[o] = UInt8(truncatingIfNeeded: v)
                    d[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
                    d[o + 2] = UInt8(truncatingIfNeeded: v >> 16)
                    o += 3
                }
            }
        }
        return r
    }

    /// Draws the whole source and the bars.
    public func drawAll(from src: Surface, to dst: Surface) {
        paintBars(dst)
        draw(from: src, x: 0, y: 0, width: box.sourceWidth, height: box.sourceHeight, to: dst)
    }
}

/// XRGB8888 -> any packed format, by per-channel shift and mask.
struct Converter {
    let rs: UInt32, rm: UInt32, rd: UInt32
    let gs: UInt32, gm: UInt32, gd: UInt32
    let bs: UInt32, bm: UInt32, bd: UInt32

    init(_ f: PixelFormat) {
        rs = UInt32(16 + 8 - min(8, f.red.bits)); rm = (1 << UInt32(min(8, f.red.bits))) - 1; rd = UInt32(f.red.shift)
        gs = UInt32(8 + 8 - min(8, f.green.bits)); gm = (1 << UInt32(min(8, f.green.bits))) - 1; gd = UInt32(f.green.shift)
        bs = UInt32(0 + 8 - min(8, f.blue.bits)); bm = (1 << UInt32(min(8, f.blue.bits))) - 1; bd = UInt32(f.blue.shift)
    }

    @inline(__always) func convert(_ p: UInt32) -> UInt32 {
        ((p >> rs) & rm) << rd | ((p >> gs) & gm) << gd | ((p >> bs) & bm) << bd
    }
}
