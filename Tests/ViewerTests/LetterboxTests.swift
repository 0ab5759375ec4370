import Testing
@testable import Viewer

@Suite struct LetterboxTests {
    @Test(arguments: [
        // source, screen, expected rect (x, y, w, h)
        ((1024, 768), (1920, 1080), (240, 0, 1440, 1080)),      // 4:3 on 16:9: pillarbox
        ((1920, 1080), (1024, 768), (0, 96, 1024, 576)),        // 16:9 on 4:3: letterbox
        ((1280, 800), (1280, 800), (0, 0, 1280, 800)),          // same size
        ((640, 480), (1280, 960), (0, 0, 1280, 960)),           // exact 2x
        ((720, 400), (1920, 1080), (0, 6, 1920, 1067)),         // 1066.67 rounds to 1067, bars of 6 and 7
        ((801, 601), (1366, 768), (171, 0, 1024, 768)),         // odd sizes: 801*768/601 = 1023.6 -> 1024
        ((1, 1), (3, 2), (0, 0, 2, 2)),                         // tiny: square on 3x2, bar of 1 column right
    ] as [((Int, Int), (Int, Int), (Int, Int, Int, Int))])
    func fitsKeepingAspect(_ src: (Int, Int), _ scr: (Int, Int), _ want: (Int, Int, Int, Int)) {
        let b = Letterbox(sourceWidth: src.0, sourceHeight: src.1, screenWidth: scr.0, screenHeight: scr.1)
        #expect(b.x == want.0 && b.y == want.1 && b.width == want.2 && b.height == want.3, "\(b)")
        // the picture is centred: the bars differ by at most one pixel
        let left = b.x, right = b.screenWidth - b.x - b.width
        let top = b.y, bottom = b.screenHeight - b.y - b.height
        #expect(abs(left - right) <= 1 && abs(top - bottom) <= 1)
    }

    @Test func extremeAspectNeverCollapses() {
        let b = Letterbox(sourceWidth: 4000, sourceHeight: 10, screenWidth: 100, screenHeight: 100)
        #expect(b.width == 100 && b.height == 1 && b.y == 49 && b.x == 0)
        let z = Letterbox(sourceWidth: 0, sourceHeight: 0, screenWidth: 0, screenHeight: 0)
        #expect(z.width == 1 && z.height == 1)
    }

    @Test func aspectErrorIsBelowOnePixel() {
        for (sw, sh) in [(1024, 768), (1280, 720), (800, 600), (1366, 768), (720, 400), (333, 777)] {
            for (dw, dh) in [(1920, 1080), (1024, 768), (2560, 1600), (800, 480), (1079, 1919)] {
                let b = Letterbox(sourceWidth: sw, sourceHeight: sh, screenWidth: dw, screenHeight: dh)
                #expect(b.width <= dw && b.height <= dh)
                #expect(b.width == dw || b.height == dh, "fills one dimension: \(b)")
                // w/h matches sw/sh within the rounding of one pixel
                let err = abs(Double(b.width) * Double(sh) / Double(sw) - Double(b.height))
                #expect(err <= 1.0, "\(b)")
            }
        }
    }

    @Test func identitySamplesEveryPixel() {
        let b = Letterbox(sourceWidth: 640, sourceHeight: 480, screenWidth: 640, screenHeight: 480)
        for i in 0..<640 { #expect(b.sourceColumn(i) == i) }
        for j in 0..<480 { #expect(b.sourceRow(j) == j) }
    }

    @Test func samplingIsMonotoneAndCoversTheEdges() {
        let b = Letterbox(sourceWidth: 1024, sourceHeight: 768, screenWidth: 1920, screenHeight: 1080)
        var last = -1
        for i in 0..<b.width {
            let s = b.sourceColumn(i)
            #expect(s >= last && s < 1024)
            last = s
        }
        #expect(b.sourceColumn(0) == 0 && b.sourceColumn(b.width - 1) == 1023)
        #expect(b.sourceRow(0) == 0 && b.sourceRow(b.height - 1) == 767)
    }

    @Test func pointerMapsBackThroughTheScaling() {
        let b = Letterbox(sourceWidth: 1024, sourceHeight: 768, screenWidth: 1920, screenHeight: 1080)
        #expect(b.guestPoint(screenX: 240, screenY: 0) == (0, 0))
        #expect(b.guestPoint(screenX: 1679, screenY: 1079) == (1023, 767))
        #expect(b.guestPoint(screenX: 960, screenY: 540) == (512, 384))
        // on the bars: clamped to the nearest edge
        #expect(b.guestPoint(screenX: 0, screenY: 500) == (0, b.sourceRow(500)))
        #expect(b.guestPoint(screenX: 1919, screenY: 10) == (1023, b.sourceRow(10)))
        #expect(!b.contains(screenX: 239, screenY: 10) && b.contains(screenX: 240, screenY: 10))
    }
}
