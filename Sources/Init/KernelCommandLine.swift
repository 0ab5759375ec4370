/// The kernel command line (`/proc/cmdline`), split the way the kernel splits
/// it: on spaces, with double quotes grouping a value.
public struct KernelCommandLine: Equatable, Sendable {
    public var arguments: [String]

    public init(_ text: String) {
        var args: [String] = []
        var cur = ""
        var quoted = false
        var any = false
        for ch in text {
            if ch == "\"" { quoted.toggle(); any = true; continue }
            if !quoted && (ch == " " || ch == "\n" || ch == "\t") {
                if any { args.append(cur); cur = ""; any = false }
                continue
            }
            cur.append(ch); any = true
        }
        if any { args.append(cur) }
        arguments = args
    }

    /// The value of the last `key=value` argument.
    public func value(_ key: String) -> String? {
        let prefix = key + "="
        return arguments.last { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// True when `flag` is present alone or as `flag=1`/`flag=true`/`flag=yes`.
    public func flag(_ key: String) -> Bool {
        if arguments.contains(key) { return true }
        guard let v = value(key) else { return false }
        return ["1", "true", "yes", "on"].contains(v.lowercased())
    }

    /// `cloudbios.config=SOURCE`
    public var configSource: String? { value("cloudbios.config").flatMap { $0.isEmpty ? nil : $0 } }
    /// `cloudbios.display=VM` (`none` = no local thin client)
    public var display: String? { value("cloudbios.display").flatMap { $0.isEmpty ? nil : $0 } }
    /// `cloudbios.rescue=1`: shells on the consoles, no services.
    public var rescue: Bool { flag("cloudbios.rescue") }
}
