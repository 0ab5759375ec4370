import Testing
@testable import Viewer

@Suite struct KeymapTests {
    // Linux keycodes
    static let KEY_A: UInt16 = 30, KEY_Z: UInt16 = 44, KEY_1: UInt16 = 2, KEY_SLASH: UInt16 = 53
    static let KEY_ENTER: UInt16 = 28, KEY_F1: UInt16 = 59, KEY_F10: UInt16 = 68, KEY_F11: UInt16 = 87

    @Test(arguments: [
        (30, false, 0x61), (30, true, 0x41),          // a A
        (44, false, 0x7A), (44, true, 0x5A),          // z Z
        (2, false, 0x31), (2, true, 0x21),            // 1 !
        (3, true, 0x40), (6, true, 0x25), (7, true, 0x5E),  // @ % ^
        (12, false, 0x2D), (12, true, 0x5F),          // - _
        (40, false, 0x27), (40, true, 0x22),          // ' "
        (41, false, 0x60), (41, true, 0x7E),          // ` ~
        (43, false, 0x5C), (43, true, 0x7C),          // \ |
        (53, false, 0x2F), (53, true, 0x3F),          // / ?
        (57, false, 0x20), (57, true, 0x20),          // space
        (28, false, 0xFF0D), (14, false, 0xFF08), (15, false, 0xFF09), (1, false, 0xFF1B),
        (59, false, 0xFFBE), (68, false, 0xFFC7), (87, false, 0xFFC8), (88, false, 0xFFC9),   // F1 F10 F11 F12
        (29, false, 0xFFE3), (97, false, 0xFFE4), (42, false, 0xFFE1), (54, false, 0xFFE2),   // Ctrl, Shift
        (56, false, 0xFFE9), (100, false, 0xFFEA), (125, false, 0xFFEB), (58, false, 0xFFE5), // Alt, Super, Caps
        (103, false, 0xFF52), (108, false, 0xFF54), (105, false, 0xFF51), (106, false, 0xFF53),
        (102, false, 0xFF50), (107, false, 0xFF57), (111, false, 0xFFFF), (96, false, 0xFF8D),
    ] as [(UInt16, Bool, UInt32)])
    func usLayout(_ code: UInt16, _ shift: Bool, _ keysym: UInt32) {
        #expect(Keymap.keysym(for: code, shift: shift) == keysym)
    }

    @Test func capsLockShiftsLettersOnly() {
        #expect(Keymap.keysym(for: 30, capsLock: true) == 0x41)
        #expect(Keymap.keysym(for: 30, shift: true, capsLock: true) == 0x61)
        #expect(Keymap.keysym(for: 2, capsLock: true) == 0x31)
    }

    @Test func unknownKeysAreNil() {
        #expect(Keymap.keysym(for: 0) == nil)
        #expect(Keymap.keysym(for: 240) == nil)
        #expect(Keymap.qnum(for: 240) == nil)
    }

    @Test func scancodes() {
        #expect(Keymap.qnum(for: 30) == 0x1E)           // A
        #expect(Keymap.qnum(for: 88) == 0x58)           // F12
        #expect(Keymap.qnum(for: 97) == 0x9D)           // right Ctrl: E0 1D
        #expect(Keymap.qnum(for: 103) == 0xC8)          // Up: E0 48
        #expect(Keymap.qnum(for: 125) == 0xDB)          // left Super: E0 5B
    }

    @Test func translatorTracksShift() {
        var t = KeyTranslator()
        #expect(t.translate(code: 42, value: 1) == GuestKey(keysym: 0xFFE1, qnum: 0x2A, down: true))
        #expect(t.translate(code: 30, value: 1)?.keysym == 0x41)
        #expect(t.translate(code: 30, value: 2) == GuestKey(keysym: 0x41, qnum: 0x1E, down: true))  // repeat
        #expect(t.translate(code: 42, value: 0)?.down == false)
        #expect(t.translate(code: 30, value: 0) == GuestKey(keysym: 0x61, qnum: 0x1E, down: false))
        // right shift and caps lock (toggles on press only)
        _ = t.translate(code: 58, value: 1); _ = t.translate(code: 58, value: 0)
        #expect(t.translate(code: 31, value: 1)?.keysym == 0x53)   // S
        _ = t.translate(code: 54, value: 1)
        #expect(t.translate(code: 31, value: 1)?.keysym == 0x73)   // s
    }

    @Test func reverseMapForTheConsoleServer() {
        #expect(Keymap.keycodes[0x61]! == (30, false))
        #expect(Keymap.keycodes[0x41]! == (30, true))
        #expect(Keymap.keycodes[0x21]! == (2, true))
        #expect(Keymap.keycodes[0xFF0D]! == (28, false))
        #expect(Keymap.keycodes[0xFFC9]! == (88, false))
        // every mapped key survives the round trip
        for (sym, k) in Keymap.keycodes where sym != 0xFF8D && sym != 0x3C && sym != 0x3E {
            #expect(Keymap.keysym(for: k.code, shift: k.shift) == sym, "keysym \(sym)")
        }
    }
}

@Suite struct HotkeyTests {
    typealias A = HotkeyDetector.Action
    let ctrl: UInt16 = 29, alt: UInt16 = 56, f12: UInt16 = 88, rctrl: UInt16 = 97, ralt: UInt16 = 100

    @Test func ctrlAltF12Toggles() {
        var h = HotkeyDetector()
        #expect(h.feed(code: ctrl, value: 1) == .forward)
        #expect(h.feed(code: alt, value: 1) == .forward)
        #expect(h.feed(code: f12, value: 1) == .toggle)
        #expect(h.feed(code: f12, value: 2) == .swallow)    // autorepeat of the hotkey
        #expect(h.feed(code: f12, value: 0) == .swallow)
        #expect(h.feed(code: alt, value: 0) == .forward)
        #expect(h.feed(code: ctrl, value: 0) == .forward)
        // a plain F12 afterwards reaches the guest
        #expect(h.feed(code: f12, value: 1) == .forward)
        #expect(h.feed(code: f12, value: 0) == .forward)
    }

    @Test func rightHandModifiersAndAnyOrder() {
        var h = HotkeyDetector()
        _ = h.feed(code: ralt, value: 1)
        _ = h.feed(code: rctrl, value: 1)
        #expect(h.feed(code: f12, value: 1) == .toggle)
        // F12 released after the modifiers: still eaten
        _ = h.feed(code: ralt, value: 0); _ = h.feed(code: rctrl, value: 0)
        #expect(h.feed(code: f12, value: 0) == .swallow)
    }

    @Test func partialChordsDoNotToggle() {
        var h = HotkeyDetector()
        _ = h.feed(code: ctrl, value: 1)
        #expect(h.feed(code: f12, value: 1) == .forward)       // Ctrl+F12 is the guest's
        #expect(h.feed(code: f12, value: 0) == .forward)
        _ = h.feed(code: ctrl, value: 0)
        _ = h.feed(code: alt, value: 1)
        #expect(h.feed(code: f12, value: 1) == .forward)       // Alt+F12 too
        _ = h.feed(code: f12, value: 0)
        // F12 held first, then Ctrl+Alt: the press was forwarded, no toggle on repeats
        _ = h.feed(code: alt, value: 0)
        #expect(h.feed(code: f12, value: 1) == .forward)
        _ = h.feed(code: ctrl, value: 1); _ = h.feed(code: alt, value: 1)
        #expect(h.feed(code: f12, value: 2) == .forward)
        #expect(h.feed(code: 87, value: 1) == .forward)        // Ctrl+Alt+F11 is the guest's
    }

    @Test func togglesTwiceForTwoPresses() {
        var h = HotkeyDetector()
        _ = h.feed(code: ctrl, value: 1); _ = h.feed(code: alt, value: 1)
        #expect(h.feed(code: f12, value: 1) == .toggle)
        #expect(h.feed(code: f12, value: 0) == .swallow)
        #expect(h.feed(code: f12, value: 1) == .toggle)
        #expect(h.feed(code: f12, value: 0) == .swallow)
    }
}
