/// Where a guest screen of `source` size lands on a local screen of `screen`
/// size: scaled to fit while keeping its aspect ratio, centred, with black
/// bars on the two sides (pillarbox) or above and below (letterbox).
///
/// Pixels are sampled at their centres, so a 1:1 map is the identity and
/// downscaling picks evenly spread source pixels.
public struct Letterbox: Equatable, Sendable, CustomStringConvertible {
    public let sourceWidth: Int, sourceHeight: Int
    public let screenWidth: Int, screenHeight: Int
    /// The guest's rectangle on the screen.
    public let x: Int, y: Int, width: Int, height: Int

    public init(sourceWidth: Int, sourceHeight: Int, screenWidth: Int, screenHeight: Int) {
        let sw = max(1, sourceWidth), sh = max(1, sourceHeight)
        let dw = max(1, screenWidth), dh = max(1, screenHeight)
        self.sourceWidth = sw; self.sourceHeight = sh
        self.screenWidth = dw; self.screenHeight = dh
        var w: Int, h: Int
        if sw * dh >= dw * sh {
            // wider than the screen (or the same shape): full width
            w = dw
            h = (sh * dw + sw / 2) / sw
        } else {
            h = dh
            w = (sw * dh + sh / 2) / sh
        }
        w = min(max(w, 1), dw); h = min(max(h, 1), dh)
        width = w; height = h
        x = (dw - w) / 2; y = (dh - h) / 2
    }

    /// The source column sampled for screen column `x + i` (0 ≤ i < width).
    @inline(__always) public func sourceColumn(_ i: Int) -> Int {
        min(sourceWidth - 1, ((2 * i + 1) * sourceWidth) / (2 * width))
    }

    /// The source row sampled for screen row `y + j` (0 ≤ j < height).
    @inline(__always) public func sourceRow(_ j: Int) -> Int {
        min(sourceHeight - 1, ((2 * j + 1) * sourceHeight) / (2 * height))
    }

    /// The guest pixel under a screen position; positions on the bars clamp
    /// to the nearest edge of the guest screen.
    public func guestPoint(screenX: Int, screenY: Int) -> (x: Int, y: Int) {
        let i = min(max(screenX - x, 0), width - 1)
        let j = min(max(screenY - y, 0), height - 1)
        return (sourceColumn(i), sourceRow(j))
    }

    /// True when the screen position is on the guest picture (not a bar).
    public func contains(screenX: Int, screenY: Int) -> Bool {
        screenX >= x && screenX < x + width && screenY >= y && screenY < y + height
    }

    public var description: String {
        "\(sourceWidth)x\(sourceHeight) -> \(width)x\(height)+\(x)+\(y) on \(screenWidth)x\(screenHeight)"
    }
}
