/// Validation of every user-chosen name that reaches a path or a QEMU option.
/// Names are checked here once; nothing else in the system accepts a name
/// that did not pass.
public enum Names {
    /// VM names: `[a-z0-9][a-z0-9-]{0,62}`.
    public static func checkVM(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty else { return "VM name is empty" }
        guard u.count <= 63 else { return "VM name '\(clip(name))' is longer than 63 characters" }
        guard isLowerAlnum(u[0]) else { return "VM name '\(clip(name))' must start with a lowercase letter or digit" }
        guard u.allSatisfy({ isLowerAlnum($0) || $0 == UInt8(ascii: "-") }) else {
            return "VM name '\(clip(name))' may contain only a-z, 0-9 and '-'"
        }
        return nil
    }

    /// Image names: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`, no `..`. Safe as a file
    /// name and inside a QEMU option string (no commas, no slashes).
    public static func checkImage(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty else { return "image name is empty" }
        guard u.count <= 128 else { return "image name '\(clip(name))' is longer than 128 characters" }
        guard isAlnum(u[0]) else { return "image name '\(clip(name))' must start with a letter or digit" }
        guard u.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
            return "image name '\(clip(name))' may contain only letters, digits, '.', '_' and '-'"
        }
        guard !zip(u, u.dropFirst()).contains(where: { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") }) else {
            return "image name '\(clip(name))' must not contain '..'"
        }
        return nil
    }

    /// Panel user names: `[A-Za-z0-9_][A-Za-z0-9._-]{0,31}`.
    /// Whether a password hash is a crypt(3) hash the panel can verify.
    public static func isCryptHash(_ hash: String) -> Bool {
        (hash.hasPrefix("$6$") || hash.hasPrefix("$y$") || hash.hasPrefix("$5$") || hash.hasPrefix("$gy$"))
            && hash.utf8.count <= 512 && hash.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }

    /// An OpenSSH public key line: `TYPE BASE64 [comment]`, one line, printable.
    public static func checkSSHKey(_ key: String) -> String? {
        let u = Array(key.utf8)
        guard !u.isEmpty, u.count <= 16384 else { return "an SSH public key must be 1 to 16384 characters" }
        guard u.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return "an SSH public key must be one line of printable ASCII" }
        let parts = key.split(separator: " ", omittingEmptySubsequences: true)
        let types = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                     "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss"]
        guard parts.count >= 2, types.contains(String(parts[0])),
              parts[1].utf8.count >= 16, parts[1].utf8.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "=") }) else {
            return "not an SSH public key (expected 'ssh-ed25519 AAAA… comment', as in ~/.ssh/id_ed25519.pub)"
        }
        return nil
    }

    /// A network interface name (`eth0`, `enp1s0`, `vmbr0.10`).
    public static func checkInterface(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 15, u[0] != UInt8(ascii: "-"), u[0] != UInt8(ascii: "."),
              u.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) else {
            return "'\(clip(name))' is not a network interface name"
        }
        return nil
    }

    /// A disk's id: `[a-z0-9][a-z0-9-]{0,31}` (its file is named by it).
    public static func checkDiskID(_ id: String) -> String? {
        let u = Array(id.utf8)
        let lowerOrDigit: (UInt8) -> Bool = { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) }
        guard !u.isEmpty, u.count <= 32, lowerOrDigit(u[0]), u.allSatisfy({ lowerOrDigit($0) || $0 == UInt8(ascii: "-") }) else {
            return "id '\(clip(id))' must be 1 to 32 lower-case letters, digits and '-', starting with a letter or digit"
        }
        return nil
    }

    /// A snapshot's name: `[A-Za-z][A-Za-z0-9._-]{0,39}`. It starts with a
    /// letter, so it is never taken for a snapshot's numeric id by qemu-img.
    public static func checkSnapshot(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 40, isAlnum(u[0]), !isLowerAlnum(u[0]) || u[0] >= 0x61,
              u.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
            return "snapshot name '\(clip(name))' must be 1 to 40 letters, digits, '.', '_' and '-', starting with a letter"
        }
        return nil
    }

    /// A Linux user name for a guest (cloud-init creates it).
    public static func checkGuestUser(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 32, (u[0] >= 0x61 && u[0] <= 0x7a) || u[0] == UInt8(ascii: "_"),
              u.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }),
              name != "root" else {
            return "user '\(clip(name))' must be a Linux user name other than root (lower-case letters, digits, '_', '-')"
        }
        return nil
    }

    public static func checkUser(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 32 else { return "user name must be 1 to 32 characters" }
        guard u.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }),
              u[0] != UInt8(ascii: "."), u[0] != UInt8(ascii: "-") else {
            return "user name '\(clip(name))' may contain only letters, digits, '.', '_' and '-'"
        }
        return nil
    }

    /// Lowercase hex SHA-256.
    public static func checkSHA256(_ s: String) -> String? {
        let u = Array(s.utf8)
        guard u.count == 64, u.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            return "sha256 must be 64 lowercase hex digits"
        }
        return nil
    }

    /// Kernel command lines for guests: printable, no newlines, bounded.
    public static func checkAppend(_ s: String) -> String? {
        guard s.utf8.count <= VMLimits.maxAppendBytes else { return "append is longer than \(VMLimits.maxAppendBytes) bytes" }
        guard s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) else {
            return "append must not contain control characters"
        }
        return nil
    }

    static func isLowerAlnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
    static func isAlnum(_ c: UInt8) -> Bool { isLowerAlnum(c) || (c >= 0x41 && c <= 0x5a) }

    /// Names in messages are clipped and made printable.
    public static func clip(_ s: String) -> String {
        let printable = String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
        return printable.count > 40 ? String(printable.prefix(40)) + "…" : printable
    }
}

/// IPv4 literals as the config accepts them.
public enum IPv4 {
    /// `192.0.2.10`
    public static func isAddress(_ s: String) -> Bool { StrictDecoder.validIPv4(s) }
    /// `192.0.2.10/24`
    public static func isCIDR(_ s: String) -> Bool { StrictDecoder.validCIDR(s) }

    /// The address as a number, nil when `s` is not one.
    public static func value(_ s: String) -> UInt32? {
        let p = s.split(separator: ".", omittingEmptySubsequences: false)
        guard p.count == 4 else { return nil }
        var v: UInt32 = 0
        for x in p { guard x.count <= 3, let b = UInt32(x), b <= 255 else { return nil }; v = v << 8 | b }
        return v
    }

    /// Whether `address` is inside `cidr`'s subnet and not its own address.
    public static func isInSubnet(_ address: String, of cidr: String) -> Bool {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let a = value(String(parts[0])), let len = UInt32(parts[1]), len <= 32, let g = value(address) else { return false }
        let mask: UInt32 = len == 0 ? 0 : ~UInt32(0) << (32 - len)
        return a & mask == g & mask && g != a
    }
}

/// IPv6 literals as the config accepts them (RFC 4291 text forms: eight
/// groups, `::` once, an IPv4 tail; no zone index).
public enum IPv6 {
    /// `2001:db8::10`
    public static func isAddress(_ s: String) -> Bool { groups(s) != nil }

    /// `2001:db8::10/64`
    public static func isCIDR(_ s: String) -> Bool {
        let p = s.split(separator: "/", omittingEmptySubsequences: false)
        guard p.count == 2, isAddress(String(p[0])), p[1].count <= 3, let len = Int(p[1]), (0...128).contains(len) else { return false }
        return true
    }

    /// The eight 16-bit groups, nil when `s` is not an address.
    public static func groups(_ s: String) -> [UInt16]? {
        guard !s.isEmpty, s.utf8.count <= 45 else { return nil }
        // split at the one "::", if any
        var halves = [s]
        let u = Array(s.utf8)
        if let i = u.indices.dropLast().first(where: { u[$0] == 58 && u[$0 + 1] == 58 }) {
            let rest = Array(u[(i + 2)...])
            if rest.indices.dropLast().contains(where: { rest[$0] == 58 && rest[$0 + 1] == 58 }) { return nil }
            halves = [String(decoding: u[..<i], as: UTF8.self), String(decoding: rest, as: UTF8.self)]
        }
        func parse(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, f) in fields.enumerated() {
                if allowV4Tail && i == fields.count - 1 && f.contains(".") {
                    guard let v = IPv4.value(String(f)) else { return nil }
                    out += [UInt16(v >> 16), UInt16(v & 0xffff)]
                } else {
                    guard (1...4).contains(f.count), let g = UInt16(f, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        if halves.count == 1 {
            guard let g = parse(halves[0], allowV4Tail: true), g.count == 8 else { return nil }
            return g
        }
        guard let head = parse(halves[0], allowV4Tail: false), let tail = parse(halves[1], allowV4Tail: true),
              head.count + tail.count <= 7 else { return nil }
        return head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
    }

    /// Whether `address` is inside `cidr`'s prefix and not its own address.
    public static func isInSubnet(_ address: String, of cidr: String) -> Bool {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let a = groups(String(parts[0])), let len = Int(parts[1]), (0...128).contains(len),
              let g = groups(address), a != g else { return false }
        var bits = len
        for i in 0..<8 {
            let take = min(16, max(0, bits))
            let mask: UInt16 = take == 0 ? 0 : ~UInt16(0) << (16 - take)
            if a[i] & mask != g[i] & mask { return false }
            bits -= 16
        }
        return true
    }
}
