#if canImport(Glibc)
import Glibc
#endif
import Platform

/// Readings from /proc about the host and QEMU processes.
enum ProcStats {
    static var clockTicks: Double { Double(sysconf(Int32(_SC_CLK_TCK))) }
    static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// utime+stime in seconds and RSS in bytes of a process.
    static func process(_ pid: Int32) -> (cpuSeconds: Double, rssBytes: Int64)? {
        guard let s = Files.readTrimmed("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return nil }
        let f = s[s.index(after: close)...].split(separator: " ")
        // fields after the comm: state(3) … utime(14) stime(15) … rss(24) → offsets -3
        guard f.count > 21, let ut = Double(f[11]), let st = Double(f[12]), let rss = Int64(f[21]) else { return nil }
        return ((ut + st) / clockTicks, rss * Int64(pageSize))
    }

    /// The command line of a process as its arguments.
    static func cmdline(_ pid: Int32) -> [String] {
        guard let b = try? Files.read("/proc/\(pid)/cmdline", limit: 1 << 20) else { return [] }
        return b.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }

    static func meminfo() -> [String: Int] {
        var out: [String: Int] = [:]
        for line in (Files.readTrimmed("/proc/meminfo") ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let v = Int(parts[1]) { out[String(parts[0].dropLast())] = v }
        }
        return out
    }

    static func cpu() -> (model: String, count: Int) {
        var model = "unknown"
        var count = 0
        for line in (Files.readTrimmed("/proc/cpuinfo") ?? "").split(separator: "\n") {
            if line.hasPrefix("processor") { count += 1 }
            if line.hasPrefix("model name"), model == "unknown", let c = line.firstIndex(of: ":") {
                model = line[line.index(after: c)...].trimmingCharacters()
            }
        }
        return (model, max(count, 1))
    }

    static func uptime() -> Int {
        Int(Double(Files.readTrimmed("/proc/uptime")?.split(separator: " ").first ?? "0") ?? 0)
    }

    static func loadAverage() -> [Double] {
        (Files.readTrimmed("/proc/loadavg") ?? "").split(separator: " ").prefix(3).compactMap { Double($0) }
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(nulTerminated: buf)
    }
}
