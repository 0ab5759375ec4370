import Config

/// The host console's menu on the machine's own screen (like TrueNAS's and
/// Proxmox's console menus): keyboard only, readable at 80×25. Pure: bytes
/// from the terminal in, actions and screen text out; `cloudbios
/// host-console` does the terminal and the actions.
public struct HostMenu: Sendable {
    /// What the menu asks the console to do.
    public enum Action: Equatable, Sendable {
        case setPassword(user: String, password: String)
        /// `address` is `dhcp` or an IPv4 CIDR.
        case network(interface: String, address: String, gateway: String?, dns: [String])
        case showSetupCode
        case shell(user: String, password: String)
        case reboot
        case powerOff
    }

    struct Field: Sendable {
        var label: String
        var secret = false
        var value = ""
        var placeholder = ""
    }

    enum Screen: Sendable {
        case main
        case form(title: String, kind: Kind, fields: [Field], index: Int)
        case message(String)
    }

    enum Kind: Sendable { case password, network, shell, reboot, powerOff }

    var screen = Screen.main
    /// The NIC the network form offers first.
    public var defaultInterface = "eth0"

    public init() {}

    public static let menuLines = [
        "1) Set the admin password      2) Network (DHCP / static)",
        "3) Show the setup code         4) Root shell (admin password)",
        "5) Reboot                      6) Shut down",
    ]

    /// Shows `text` until a key is pressed.
    public mutating func show(_ text: String) { screen = .message(text) }

    /// Feeds one byte typed on the console; an action when a form is done.
    public mutating func feed(_ byte: UInt8) -> Action? {
        switch screen {
        case .message:
            screen = .main
            return nil
        case .main:
            switch byte {
            case UInt8(ascii: "1"):
                screen = .form(title: "Set the admin password", kind: .password,
                               fields: [Field(label: "User", value: "admin"), Field(label: "New password", secret: true),
                                        Field(label: "Again", secret: true)], index: 0)
            case UInt8(ascii: "2"):
                screen = .form(title: "Network", kind: .network,
                               fields: [Field(label: "Interface", value: defaultInterface),
                                        Field(label: "Address", placeholder: "dhcp, or 192.0.2.10/24"),
                                        Field(label: "Gateway", placeholder: "optional"),
                                        Field(label: "DNS servers", placeholder: "optional, space separated")], index: 0)
            case UInt8(ascii: "3"): return .showSetupCode
            case UInt8(ascii: "4"):
                screen = .form(title: "Root shell", kind: .shell,
                               fields: [Field(label: "Admin user", value: "admin"), Field(label: "Password", secret: true)], index: 0)
            case UInt8(ascii: "5"):
                screen = .form(title: "Reboot (guests shut down first)", kind: .reboot,
                               fields: [Field(label: "Type yes to reboot")], index: 0)
            case UInt8(ascii: "6"):
                screen = .form(title: "Shut down (guests shut down first)", kind: .powerOff,
                               fields: [Field(label: "Type yes to shut down")], index: 0)
            default: break
            }
            return nil
        case .form(let title, let kind, var fields, var index):
            switch byte {
            case 0x1B, 0x03:  // Esc, Ctrl-C: back
                screen = .main
                return nil
            case 0x7F, 0x08:
                if !fields[index].value.isEmpty { fields[index].value.removeLast() }
            case 0x15:  // Ctrl-U
                fields[index].value = ""
            case 0x0D, 0x0A:
                if index + 1 < fields.count {
                    index += 1
                } else {
                    screen = .main
                    return finish(kind, fields.map { Substring($0.value).trimmingSpaces() })
                }
            case 0x20...0x7E:
                if fields[index].value.utf8.count < 200 { fields[index].value.unicodeScalars.append(Unicode.Scalar(byte)) }
            default: break
            }
            screen = .form(title: title, kind: kind, fields: fields, index: index)
            return nil
        }
    }

    mutating func finish(_ kind: Kind, _ v: [String]) -> Action? {
        switch kind {
        case .password:
            if v[1] != v[2] { show("The two passwords differ; nothing was changed."); return nil }
            if v[1].utf8.count < 8 { show("The password must have at least 8 characters; nothing was changed."); return nil }
            return .setPassword(user: v[0], password: v[1])
        case .network:
            let address = v[1].isEmpty ? "dhcp" : v[1]
            if address != "dhcp" && !IPv4.isCIDR(address) {
                show("'\(address)' is not dhcp or an IPv4 address with its prefix (192.0.2.10/24); nothing was changed.")
                return nil
            }
            if !v[2].isEmpty && !IPv4.isAddress(v[2]) { show("The gateway '\(v[2])' is not an IPv4 address; nothing was changed."); return nil }
            let dns = v[3].split(separator: " ").map(String.init)
            if let bad = dns.first(where: { !IPv4.isAddress($0) }) { show("The DNS server '\(bad)' is not an IPv4 address; nothing was changed."); return nil }
            if address != "dhcp" && v[2].isEmpty == false && !IPv4.isInSubnet(v[2], of: address) {
                show("The gateway \(v[2]) is outside \(address); nothing was changed.")
                return nil
            }
            return .network(interface: v[0], address: address, gateway: v[2].isEmpty ? nil : v[2], dns: dns)
        case .shell:
            return .shell(user: v[0], password: v[1])
        case .reboot:
            if v[0].lowercased() == "yes" { return .reboot }
            show("Not rebooted.")
            return nil
        case .powerOff:
            if v[0].lowercased() == "yes" { return .powerOff }
            show("Not shut down.")
            return nil
        }
    }

    /// The whole screen: the status text (cut to fit) above the menu or the
    /// form being filled in. Lines end with \n; at most `height` lines.
    public func render(status: String, width: Int = 80, height: Int = 25) -> String {
        var bottom: [String] = [String(repeating: "-", count: min(width, 78))]
        switch screen {
        case .main:
            bottom += Self.menuLines
            bottom.append("Press a number. Ctrl+Alt+F12 returns to the guest.")
        case .message(let text):
            bottom += Self.wrap(text, width: width)
            bottom.append("Press any key.")
        case .form(let title, _, let fields, let index):
            bottom.append(title + "  (Enter: next, Esc: cancel)")
            for (i, f) in fields.enumerated() {
                let shown = f.secret ? String(repeating: "*", count: f.value.count) : f.value
                let hint = shown.isEmpty && i == index && !f.placeholder.isEmpty ? "  (\(f.placeholder))" : ""
                bottom.append("\(i == index ? ">" : " ") \(f.label): \(shown)\(i == index ? "_" : "")\(hint)")
            }
        }
        let room = max(0, height - bottom.count)
        var top = status.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if top.last == "" { top.removeLast() }
        if top.count > room { top = Array(top.prefix(room)) }
        while top.count < room { top.append("") }
        return (top + bottom).map { String($0.prefix(width)) }.joined(separator: "\n") + "\n"
    }

    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var cur = ""
        for word in text.split(separator: " ") {
            if !cur.isEmpty && cur.count + 1 + word.count > width { lines.append(cur); cur = "" }
            cur += (cur.isEmpty ? "" : " ") + word
        }
        if !cur.isEmpty { lines.append(cur) }
        return lines
    }
}
