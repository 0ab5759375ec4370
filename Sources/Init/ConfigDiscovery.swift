import Platform
import Disks
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Filesystem labels the PE knows. The installer writes the installed ones.
public enum PELabel {
    /// A removable volume (USB stick, extra disk) holding `cloudbios.yaml`.
    public static let config = "CBCONFIG"
    /// The ISO / USB stick CloudBIOS booted from (ISO 9660 volume id).
    public static let bootMedium = "CLOUDBIOS"
    /// Installed disk: the system partition (kernel, initramfs, GRUB config).
    public static let system = "CB-SYSTEM"
    /// Installed disk: the config partition (`cloudbios.yaml` minus `install:`).
    public static let installedConfig = "CB-CONFIG"
    /// Installed disk: the data partition mounted at /var/lib/cloudbios.
    public static let data = "CB-DATA"
}

/// A block device with a filesystem, as blkid reports it.
public struct Volume: Equatable, Sendable {
    public var device: String
    public var label: String?
    public var type: String?
    public var uuid: String?
    public init(device: String, label: String? = nil, type: String? = nil, uuid: String? = nil) {
        self.device = device; self.label = label; self.type = type; self.uuid = uuid
    }

    /// The filesystem types PID 1 can mount (the core's drivers): a volume
    /// of another type can hold nothing the PE reads at boot.
    public static let mountableTypes = ["vfat", "ext4", "ext3", "ext2", "iso9660"]

    /// The filesystems on the block devices of `sys`/class/block (disks and
    /// partitions with a size; loop and RAM disks are the PE's own), probed
    /// with libblkid in this process, in device order, for the types PID 1
    /// can mount only (the others' signatures are more reads each, some at
    /// the far end of the device).
    public static func probeAll(sys: String = "/sys", dev: String = "/dev") -> [Volume] {
        probeAll(sys: sys, dev: dev) { Probe.filesystem(of: $0, only: mountableTypes) }
    }

    /// The same with another probe of a device path (a cache of earlier probes).
    static func probeAll(sys: String, dev: String, probe: (String) -> FilesystemInfo?) -> [Volume] {
        blockDevices(sys: sys).compactMap { name -> Volume? in
            guard let fs = probe(dev + "/" + name) else { return nil }
            return Volume(device: dev + "/" + name, label: fs.label, type: fs.type, uuid: fs.uuid)
        }
    }

    /// The names of the disks and partitions in `sys`/class/block that may
    /// hold a volume: with a size, not the PE's own loop and RAM disks.
    static func blockDevices(sys: String) -> [String] {
        Files.list(sys + "/class/block").sorted().filter { name in
            if name.hasPrefix("loop") || name.hasPrefix("ram") || name.hasPrefix("zram") { return false }
            guard let size = Files.readTrimmed(sys + "/class/block/\(name)/size") else { return false }
            return size != "0"
        }
    }

    /// Parses `blkid` output: `/dev/vdb: LABEL="CBCONFIG" UUID="…" TYPE="vfat"`.
    public static func parseBlkid(_ text: String) -> [Volume] {
        text.split(separator: "\n").compactMap { line -> Volume? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            var v = Volume(device: String(line[..<colon]))
            var rest = Substring(line[line.index(after: colon)...])
            while let eq = rest.firstIndex(of: "=") {
                let key = rest[..<eq].trimmingSpaces()
                var after = rest[rest.index(after: eq)...]
                var value: Substring
                if after.first == "\"" {
                    after = after.dropFirst()
                    let end = after.firstIndex(of: "\"") ?? after.endIndex
                    value = after[..<end]
                    rest = end < after.endIndex ? after[after.index(after: end)...] : ""
                } else {
                    let end = after.firstIndex(of: " ") ?? after.endIndex
                    value = after[..<end]
                    rest = after[end...]
                }
                switch key {
                case "LABEL": v.label = String(value)
                case "TYPE": v.type = String(value)
                case "UUID": v.uuid = String(value)
                default: break
                }
            }
            return v
        }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

/// Where the config may come from, in the order DESIGN.md gives.
public enum ConfigSource: Equatable, Sendable, CustomStringConvertible {
    /// `cloudbios.config=http(s)://…`
    case url(String)
    /// `cloudbios.config=LABEL=NAME` or the CBCONFIG / boot medium /
    /// installed config volumes: `cloudbios.yaml` at the volume's root.
    case label(String)
    /// `cloudbios.config=/path` inside the PE (or on a mounted volume).
    case path(String)
    /// `cloudbios.config=metadata`: the cloud instance's user-data.
    case metadata

    public var description: String {
        switch self {
        case .url(let u): return u
        case .label(let l): return "LABEL=\(l)"
        case .path(let p): return p
        case .metadata: return "metadata"
        }
    }

    public static func parse(_ text: String) -> ConfigSource {
        let lower = text.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") { return .url(text) }
        if text.hasPrefix("LABEL=") { return .label(String(text.dropFirst(6))) }
        if text == "metadata" { return .metadata }
        return .path(text)
    }
}

/// One step of the config lookup, resolved against the volumes present.
public enum ConfigLookup: Equatable, Sendable {
    case fetch(url: String)
    /// The cloud's user-data (`cloudbios.config=metadata`).
    case metadata
    case volume(Volume, file: String, source: ConfigSource)
    case file(path: String)
    /// An explicitly named source that cannot be found: reported as the config error.
    case missing(ConfigSource)
}

public enum ConfigDiscovery {
    public static let fileName = "cloudbios.yaml"

    /// The sources to try, in order: the kernel argument alone when given;
    /// otherwise the CBCONFIG volume, the boot medium, the installed config
    /// partition.
    public static func sources(_ cmdline: KernelCommandLine) -> [ConfigSource] {
        if let s = cmdline.configSource { return [ConfigSource.parse(s)] }
        return [.label(PELabel.config), .label(PELabel.bootMedium), .label(PELabel.system), .label(PELabel.installedConfig)]
    }

    /// Resolves sources against the volume table. Volumes with the same label
    /// are tried in device order.
    public static func plan(_ cmdline: KernelCommandLine, volumes: [Volume]) -> [ConfigLookup] {
        let explicit = cmdline.configSource != nil
        var out: [ConfigLookup] = []
        for s in sources(cmdline) {
            switch s {
            case .url(let u): out.append(.fetch(url: u))
            case .metadata: out.append(.metadata)
            case .path(let p): out.append(.file(path: p))
            case .label(let l):
                let matches = volumes.filter { $0.label == l }.sorted { $0.device < $1.device }
                if matches.isEmpty {
                    if explicit { out.append(.missing(s)) }
                } else {
                    out += matches.map { .volume($0, file: fileName, source: s) }
                }
            }
        }
        return out
    }
}

/// Volumes probed while the drivers are still loading: each disk and
/// partition is probed once, on a thread of its own, as soon as it appears
/// (a CD-ROM's probe is a few hundred milliseconds of ATAPI commands), so
/// the volumes are known when coldplug ends. Later probes of the same
/// device wait for that result instead of probing again.
final class VolumeCache: Sendable {
    private struct State {
        var results: [String: FilesystemInfo?] = [:]
        var queue: [String] = []
        var working = false
    }
    private let state = Mutex(State())
    private let probe: @Sendable (String) -> FilesystemInfo?

    init(probe: @escaping @Sendable (String) -> FilesystemInfo? = { Probe.filesystem(of: $0, only: Volume.mountableTypes) }) {
        self.probe = probe
    }

    /// Queues the devices not seen before for probing in the background.
    func prefetch(sys: String, dev: String) {
        let devices = Volume.blockDevices(sys: sys).map { dev + "/" + $0 }
        let start = state.withLock { s -> Bool in
            let fresh = devices.filter { s.results[$0] == nil && !s.queue.contains($0) }
            s.queue += fresh
            guard !fresh.isEmpty, !s.working else { return false }
            s.working = true
            return true
        }
        if start { spawnThread { [self] in work() } }
    }

    private func work() {
        while let path = state.withLock({ s -> String? in
            if s.queue.isEmpty { s.working = false; return nil }
            return s.queue[0]
        }) {
            let fs = probe(path)
            state.withLock { s in
                s.results[path] = .some(fs)
                s.queue.removeFirst()
            }
        }
    }

    /// The volumes now: a filesystem found in the background is not probed
    /// again (a device where none was found is: a USB stick may not have
    /// been readable yet).
    func probeAll(sys: String, dev: String) -> [Volume] {
        Volume.probeAll(sys: sys, dev: dev) { path in
            while true {
                let (done, pending) = state.withLock { s in (s.results[path], s.queue.contains(path)) }
                if let done, let fs = done { return fs }
                if !pending { break }
                usleep(5_000)
            }
            let fs = probe(path)
            state.withLock { s in s.results[path] = .some(fs) }
            return fs
        }
    }
}

/// `cloudbios.config=http(s)://…`: the config downloaded with Platform's
/// HTTP client, redirects followed (never from https to http) and, for
/// https, the server's certificate checked (the payload's CA bundle, or
/// `$SSL_CERT_FILE` from the kernel command line). The network may still be
/// coming up (DHCP), so a connection that fails, times out or gets a 5xx is
/// tried again for `window` seconds; a refused certificate or another answer
/// is final.
public struct ConfigFetch: Sendable {
    /// Largest config accepted.
    public static let maxSize = 4 << 20
    public var trust: TLSTrust = .environment
    /// How long failures that may pass are retried.
    public var window: Double = 30
    /// Longest wait for a connect, a read or a write.
    public var timeout: Double = 10
    /// Longest one try may take.
    public var attempt: Double = 30
    /// Pause between tries.
    public var pause: Double = 2

    public init() {}

    /// Downloads `url` into `dest` (atomically); nil when done, else why not.
    public func fetch(_ url: String, to dest: String) -> String? {
        let target: HTTPURL
        do { target = try HTTPURL(parsing: url) } catch { return "\(error)" }
        if target.tls {
            // GnuTLS and the CA bundle travel in the payload
            do { try TLSLibraries.load() } catch { return error.description }
        }
        let client = HTTPClient(trust: trust, timeout: timeout, redirects: 5)
        let deadline = Deadline.after(window)
        while true {
            let why: String
            var final = true
            do throws(NetError) {
                let r = try client.fetch(HTTPRequest("GET", target), deadline: .after(attempt), maxBody: Self.maxSize)
                if r.status == 200 {
                    do { try Files.writeAtomically(dest, r.body, mode: 0o600); return nil } catch { return "\(error)" }
                }
                why = "HTTP \(r.status)" + (r.head.reason.isEmpty ? "" : " \(r.head.reason)")
                final = r.status < 500
            } catch {
                why = "\(error)"
                switch error {
                case .resolve, .connect, .timedOut, .deadline, .noAnswer, .connectionLost: final = false
                default: break
                }
            }
            if final || deadline.remaining < pause { return why }
            usleep(UInt32(pause * 1e6))
        }
    }
}
