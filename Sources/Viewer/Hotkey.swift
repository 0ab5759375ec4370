/// Watches the keyboard for the host hotkey, Ctrl+Alt+F12, which switches
/// the local screen between the guest and the host's status console.
///
/// The F12 press and release (and its autorepeats) of the hotkey are never
/// forwarded; the Ctrl and Alt presses before it were, so the viewer releases
/// every key it holds down in the guest when the hotkey fires.
public struct HotkeyDetector: Sendable {
    public enum Action: Equatable, Sendable {
        /// Pass the event on (to the guest, when it is shown).
        case forward
        /// Drop the event.
        case swallow
        /// The hotkey fired: switch between guest and host console.
        case toggle
    }

    private var leftCtrl = false, rightCtrl = false, leftAlt = false, rightAlt = false
    /// F12 went down as part of the hotkey; its repeats and release are eaten.
    private var eatingF12 = false

    public init() {}

    public var modifiersHeld: Bool { (leftCtrl || rightCtrl) && (leftAlt || rightAlt) }

    /// Feeds one evdev key event (`value` 0 release, 1 press, 2 repeat).
    public mutating func feed(code: UInt16, value: Int32) -> Action {
        let down = value != 0
        switch code {
        case Keymap.keyLeftCtrl: leftCtrl = down
        case Keymap.keyRightCtrl: rightCtrl = down
        case Keymap.keyLeftAlt: leftAlt = down
        case Keymap.keyRightAlt: rightAlt = down
        case Keymap.keyF12:
            if value == 1 && modifiersHeld {
                eatingF12 = true
                return .toggle
            }
            if eatingF12 {
                if value == 0 { eatingF12 = false }
                return .swallow
            }
        default: break
        }
        return .forward
    }

    /// Forgets held keys (after a device goes away).
    public mutating func reset() { self = HotkeyDetector() }
}
