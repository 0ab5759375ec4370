import Testing
@testable import Viewer

/// A guest picture with a distinct colour per pixel: r = x, g = y, b = x ^ y (low bytes).
private func pattern(_ w: Int, _ h: Int) -> MemoryFramebuffer {
    let fb = MemoryFramebuffer(width: w, height: h, format: .xrgb8888)
    let p = fb.surface.base.assumingMemoryBound(to: UInt32.self)
    for y in 0..<h { for x in 0..<w { p[y * w + x] = UInt32(x & 0xFF) << 16 | UInt32(y & 0xFF) << 8 | UInt32((x ^ y) & 0xFF) } }
    return fb
}

private func expectedRGB(_ sx: Int, _ sy: Int) -> (UInt8, UInt8, UInt8) {
    (UInt8(sx & 0xFF), UInt8(sy & 0xFF), UInt8((sx ^ sy) & 0xFF))
}

/// The channel value after a round trip through `bits` bits.
private func quantized(_ v: UInt8, _ bits: Int) -> UInt8 {
    let f = PixelFormat(bitsPerPixel: 32, red: .init(shift: 0, bits: bits), green: .init(shift: 8, bits: 8), blue: .init(shift: 16, bits: 8))
    return f.unpack(f.pack(r: v, g: 0, b: 0)).r
}

@Suite struct PixelFormatTests {
    @Test(arguments: [PixelFormat.xrgb8888, .xbgr8888, .rgb888, .bgr888, .rgb565])
    func packUnpackRoundTrip(_ f: PixelFormat) {
        for (r, g, b) in [(UInt8(0), UInt8(0), UInt8(0)), (255, 255, 255), (0x1E, 0x90, 0xFF), (0x12, 0x34, 0x56)] {
            let c = f.unpack(f.pack(r: r, g: g, b: b))
            #expect(c.r == quantized(r, f.red.bits) && c.g == quantized(g, f.green.bits) && c.b == quantized(b, f.blue.bits))
        }
        // full intensity stays full intensity
        let w = f.unpack(f.pack(r: 255, g: 255, b: 255))
        #expect(w.r == 255 && w.g == 255 && w.b == 255)
    }

    @Test func knownEncodings() {
        #expect(PixelFormat.xrgb8888.pack(r: 0x1E, g: 0x90, b: 0xFF) == 0x001E_90FF)
        #expect(PixelFormat.xbgr8888.pack(r: 0x1E, g: 0x90, b: 0xFF) == 0x00FF_901E)
        #expect(PixelFormat.rgb565.pack(r: 0xFF, g: 0, b: 0) == 0xF800)
        #expect(PixelFormat.rgb565.pack(r: 0, g: 0xFF, b: 0) == 0x07E0)
        #expect(PixelFormat.rgb565.pack(r: 0x1E, g: 0x90, b: 0xFF) == 0x1C9F)
    }

    @Test func converterMatchesPack() {
        for f in [PixelFormat.xrgb8888, .xbgr8888, .rgb888, .bgr888, .rgb565] {
            let c = Converter(f)
            for v: UInt32 in [0, 0xFFFFFF, 0x1E90FF, 0x123456, 0xABCDEF] {
                let r = UInt8(v >> 16 & 0xFF), g = UInt8(v >> 8 & 0xFF), b = UInt8(v & 0xFF)
                #expect(c.convert(v) == f.pack(r: r, g: g, b: b), "\(f) \(v)")
            }
        }
    }
}

@Suite struct BlitterTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var src: (Int, Int), screen: (Int, Int), format: PixelFormat, extraStride: Int
        var testDescription: String { "\(src) on \(screen) \(format) +\(extraStride)" }
    }

    static let cases: [Case] = [
        Case(src: (64, 48), screen: (64, 48), format: .xrgb8888, extraStride: 0),     // 1:1, memcpy path
        Case(src: (64, 48), screen: (64, 48), format: .xrgb8888, extraStride: 36),    // padded rows
        Case(src: (64, 48), screen: (128, 72), format: .xrgb8888, extraStride: 0),    // upscale + pillarbox
        Case(src: (100, 30), screen: (50, 50), format: .xrgb8888, extraStride: 8),    // downscale + letterbox
        Case(src: (61, 37), screen: (97, 53), format: .rgb565, extraStride: 2),       // odd sizes, 16 bpp
        Case(src: (64, 48), screen: (80, 61), format: .rgb888, extraStride: 1),       // 24 bpp, odd stride
        Case(src: (33, 17), screen: (40, 40), format: .bgr888, extraStride: 0),
        Case(src: (64, 48), screen: (64, 48), format: .xbgr8888, extraStride: 4),     // 1:1 with conversion
        Case(src: (64, 48), screen: (96, 64), format: .xbgr8888, extraStride: 0),
    ]

    @Test(arguments: cases)
    func drawsEveryScreenPixelFromItsSourcePixel(_ c: Case) {
        let src = pattern(c.src.0, c.src.1)
        let f = c.format
        let dst = MemoryFramebuffer(width: c.screen.0, height: c.screen.1, format: f, stride: c.screen.0 * f.bytesPerPixel + c.extraStride)
        // stale content everywhere, so bars must be painted
        dst.surface.fill(x: 0, y: 0, width: c.screen.0, height: c.screen.1, r: 9, g: 9, b: 9)
        let b = ScaledBlitter(sourceWidth: c.src.0, sourceHeight: c.src.1, destination: dst.surface)
        b.drawAll(from: src.surface, to: dst.surface)
        let box = b.box
        for y in 0..<c.screen.1 {
            for x in 0..<c.screen.0 {
                let got = dst.surface.rgb(x: x, y: y)
                if box.contains(screenX: x, screenY: y) {
                    let (r, g, bl) = expectedRGB(box.sourceColumn(x - box.x), box.sourceRow(y - box.y))
                    let want = f.unpack(f.pack(r: r, g: g, b: bl))
                    if got != want { Issue.record("pixel \(x),\(y): \(got) != \(want)"); return }
                } else if got != (0, 0, 0) {
                    Issue.record("bar pixel \(x),\(y) not black: \(got)"); return
                }
            }
        }
        // padding bytes past each row are never written
        if c.extraStride > 0 {
            let bytes = dst.surface.base.assumingMemoryBound(to: UInt8.self)
            let rowBytes = c.screen.0 * f.bytesPerPixel
            let pad = f.pack(r: 9, g: 9, b: 9)
            _ = pad
            for y in 0..<c.screen.1 {
                for i in rowBytes..<(rowBytes + c.extraStride) where bytes[y * dst.surface.stride + i] != 0 {
                    Issue.record("row \(y) padding byte \(i) written"); return
                }
            }
        }
    }

    @Test func partialUpdateTouchesOnlyItsScreenRectangle() {
        let src = pattern(64, 48)
        let dst = MemoryFramebuffer(width: 128, height: 96)
        let b = ScaledBlitter(sourceWidth: 64, sourceHeight: 48, destination: dst.surface)
        b.drawAll(from: src.surface, to: dst.surface)
        // change one source pixel to white and redraw only it
        src.surface.base.assumingMemoryBound(to: UInt32.self)[10 * 64 + 20] = 0xFFFFFF
        let r = b.draw(from: src.surface, x: 20, y: 10, width: 1, height: 1, to: dst.surface)
        #expect(r == (40, 20, 2, 2))
        var white = 0
        for y in 0..<96 { for x in 0..<128 where dst.surface.rgb(x: x, y: y) == (255, 255, 255) { white += 1 } }
        #expect(white == 4)
        #expect(dst.surface.rgb(x: 40, y: 20) == (255, 255, 255) && dst.surface.rgb(x: 41, y: 21) == (255, 255, 255))
    }

    @Test func screenRectOfDownscaledUpdateMayBeEmpty() {
        let b = ScaledBlitter(sourceWidth: 1000, sourceHeight: 1000, screenWidth: 10, screenHeight: 10, destinationFormat: .xrgb8888)
        // column 1 of 1000 is never sampled (samples are 50, 150, …)
        #expect(b.screenRect(x: 1, y: 1, width: 1, height: 1).width == 0)
        #expect(b.screenRect(x: 0, y: 0, width: 1000, height: 1000) == (0, 0, 10, 10))
        #expect(b.screenRect(x: 50, y: 150, width: 1, height: 1) == (0, 1, 1, 1))
    }

    @Test func ppmDump() {
        let fb = MemoryFramebuffer(width: 2, height: 1, format: .rgb565)
        fb.surface.fill(x: 1, y: 0, width: 1, height: 1, r: 255, g: 255, b: 255)
        #expect(fb.surface.ppm() == Array("P6\n2 1\n255\n".utf8) + [0, 0, 0, 255, 255, 255])
    }
}

@Suite struct PointerTests {
    @Test func relativeMotionClampsToTheScreen() {
        var p = PointerState()
        let r: ClosedRange<Int32> = 0...1
        _ = p.feed(InputEvent(type: 2, code: 0, value: -50), absX: r, absY: r, screenWidth: 100, screenHeight: 80)
        _ = p.feed(InputEvent(type: 2, code: 1, value: 500), absX: r, absY: r, screenWidth: 100, screenHeight: 80)
        let rep = p.feed(InputEvent(type: 0, code: 0, value: 0), absX: r, absY: r, screenWidth: 100, screenHeight: 80)
        #expect(rep.map { [$0.x, $0.y, $0.buttons, $0.wheel] } == [0, 79, 0, 0])
        // nothing changed: no report
        #expect(p.feed(InputEvent(type: 0, code: 0, value: 0), absX: r, absY: r, screenWidth: 100, screenHeight: 80) == nil)
    }

    @Test func absoluteDevicesScaleTheirRangeAndButtons() {
        var p = PointerState()
        let r: ClosedRange<Int32> = 0...32767
        _ = p.feed(InputEvent(type: 3, code: 0, value: 32767), absX: r, absY: r, screenWidth: 1920, screenHeight: 1080)
        _ = p.feed(InputEvent(type: 3, code: 1, value: 16384), absX: r, absY: r, screenWidth: 1920, screenHeight: 1080)
        _ = p.feed(InputEvent(type: 1, code: 0x110, value: 1), absX: r, absY: r, screenWidth: 1920, screenHeight: 1080)
        _ = p.feed(InputEvent(type: 2, code: 8, value: -1), absX: r, absY: r, screenWidth: 1920, screenHeight: 1080)
        let rep = p.feed(InputEvent(type: 0, code: 0, value: 0), absX: r, absY: r, screenWidth: 1920, screenHeight: 1080)
        #expect(rep.map { [$0.x, $0.y, $0.buttons, $0.wheel] } == [1919, 540, 1, 16])
    }
}
