/// Linux input keycodes (linux/input-event-codes.h) to X keysyms, which the
/// RFB protocol carries, for a US layout; and to PC XT scancodes ("qnum"),
/// which QEMU's extended key event takes so the guest's own layout applies.
public enum Keymap {
    // Keysyms (X11 keysymdef.h)
    public static let shiftL: UInt32 = 0xFFE1, shiftR: UInt32 = 0xFFE2
    public static let controlL: UInt32 = 0xFFE3, controlR: UInt32 = 0xFFE4
    public static let capsLock: UInt32 = 0xFFE5
    public static let altL: UInt32 = 0xFFE9, altR: UInt32 = 0xFFEA
    public static let superL: UInt32 = 0xFFEB, superR: UInt32 = 0xFFEC
    public static let returnKey: UInt32 = 0xFF0D

    // Linux keycodes the viewer itself looks at
    public static let keyLeftCtrl: UInt16 = 29, keyRightCtrl: UInt16 = 97
    public static let keyLeftAlt: UInt16 = 56, keyRightAlt: UInt16 = 100
    public static let keyLeftShift: UInt16 = 42, keyRightShift: UInt16 = 54
    public static let keyCapsLock: UInt16 = 58
    public static let keyF12: UInt16 = 88

    private static func ch(_ c: Character) -> UInt32 { c.unicodeScalars.first!.value }

    /// keycode -> (unshifted, shifted) keysym
    static let table: [UInt16: (UInt32, UInt32)] = {
        var t: [UInt16: (UInt32, UInt32)] = [:]
        func row(_ start: UInt16, _ plain: String, _ shifted: String) {
            for (i, (a, b)) in zip(plain, shifted).enumerated() { t[start + UInt16(i)] = (ch(a), ch(b)) }
        }
        row(2, "1234567890-=", "!@#$%^&*()_+")
        row(16, "qwertyuiop[]", "QWERTYUIOP{}")
        row(30, "asdfghjkl;'`", "ASDFGHJKL:\"~")
        row(43, "\\zxcvbnm,./", "|ZXCVBNM<>?")
        t[57] = (0x20, 0x20)
        t[86] = (ch("<"), ch(">"))   // KEY_102ND
        let fixed: [UInt16: UInt32] = [
            1: 0xFF1B, 14: 0xFF08, 15: 0xFF09, 28: 0xFF0D, 29: 0xFFE3, 42: 0xFFE1, 54: 0xFFE2,
            55: 0xFFAA, 56: 0xFFE9, 58: 0xFFE5, 69: 0xFF7F, 70: 0xFF14,
            71: 0xFFB7, 72: 0xFFB8, 73: 0xFFB9, 74: 0xFFAD, 75: 0xFFB4, 76: 0xFFB5, 77: 0xFFB6,
            78: 0xFFAB, 79: 0xFFB1, 80: 0xFFB2, 81: 0xFFB3, 82: 0xFFB0, 83: 0xFFAE,
            87: 0xFFC8, 88: 0xFFC9, 96: 0xFF8D, 97: 0xFFE4, 98: 0xFFAF, 99: 0xFF61, 100: 0xFFEA,
            102: 0xFF50, 103: 0xFF52, 104: 0xFF55, 105: 0xFF51, 106: 0xFF53, 107: 0xFF57,
            108: 0xFF54, 109: 0xFF56, 110: 0xFF63, 111: 0xFFFF, 117: 0xFFBD, 119: 0xFF13,
            125: 0xFFEB, 126: 0xFFEC, 127: 0xFF67,
        ]
        for (k, v) in fixed { t[k] = (v, v) }
        for i in 0..<10 { t[59 + UInt16(i)] = (0xFFBE + UInt32(i), 0xFFBE + UInt32(i)) }  // F1..F10
        return t
    }()

    /// The keysym a key produces with the given modifier state, or nil for
    /// keys the map does not know. Caps Lock shifts letters only.
    public static func keysym(for code: UInt16, shift: Bool = false, capsLock: Bool = false) -> UInt32? {
        guard let (plain, shifted) = table[code] else { return nil }
        let isLetter = plain >= 0x61 && plain <= 0x7A
        let useShift = isLetter ? (shift != capsLock) : shift
        return useShift ? shifted : plain
    }

    /// The XT scancode QEMU's extended key event expects: the set-1 make
    /// code, with 0x80 added for 0xE0-prefixed keys. Nil when unknown.
    public static func qnum(for code: UInt16) -> UInt32? {
        if code >= 1 && code <= 88 && code != 84 && code != 85 { return UInt32(code) }
        let extended: [UInt16: UInt32] = [
            96: 0x9C, 97: 0x9D, 98: 0xB5, 99: 0xB7, 100: 0xB8, 102: 0xC7, 103: 0xC8, 104: 0xC9,
            105: 0xCB, 106: 0xCD, 107: 0xCF, 108: 0xD0, 109: 0xD1, 110: 0xD2, 111: 0xD3,
            113: 0xA0, 114: 0xAE, 115: 0xB0, 116: 0xDE, 117: 0x59, 119: 0xC6,
            125: 0xDB, 126: 0xDC, 127: 0xDD,
        ]
        return extended[code]
    }

    /// The reverse map for a VNC server that feeds a local keyboard: keysym
    /// -> (keycode, needs Shift).
    public static let keycodes: [UInt32: (code: UInt16, shift: Bool)] = {
        var r: [UInt32: (UInt16, Bool)] = [:]
        for code in table.keys.sorted() {
            let (plain, shifted) = table[code]!
            if r[plain] == nil { r[plain] = (code, false) }
            if shifted != plain && r[shifted] == nil { r[shifted] = (code, true) }
        }
        // keypad keysyms some clients send for the main keys
        r[0xFF8D] = (96, false)
        return r
    }()
}

/// One key event for the guest.
public struct GuestKey: Equatable, Sendable {
    public var keysym: UInt32
    public var qnum: UInt32?
    public var down: Bool
}

/// Turns evdev key events into RFB key events, tracking Shift and Caps Lock.
public struct KeyTranslator: Sendable {
    public private(set) var leftShift = false, rightShift = false, capsLock = false
    public init() {}

    /// `value`: 0 release, 1 press, 2 autorepeat (sent as another press).
    public mutating func translate(code: UInt16, value: Int32) -> GuestKey? {
        let down = value != 0
        switch code {
        case Keymap.keyLeftShift: leftShift = down
        case Keymap.keyRightShift: rightShift = down
        case Keymap.keyCapsLock: if value == 1 { capsLock.toggle() }
        default: break
        }
        guard let sym = Keymap.keysym(for: code, shift: leftShift || rightShift, capsLock: capsLock) else { return nil }
        return GuestKey(keysym: sym, qnum: Keymap.qnum(for: code), down: down)
    }

    public mutating func reset() { leftShift = false; rightShift = false }
}
