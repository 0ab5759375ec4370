import Config
import Platform

/// Where the boot found its config file.
public struct ConfigLocation: Equatable, Sendable {
    /// The file PID 1 read (a path inside the PE).
    public var path: String
    /// How it was found, as the status screen names it ("LABEL=CBCONFIG
    /// (/dev/vdb)", the URL, "metadata: Azure …").
    public var source: String
    /// The volume it is on, when it came from one.
    public var volume: Volume?

    public init(path: String, source: String, volume: Volume? = nil) {
        self.path = path; self.source = source; self.volume = volume
    }
}

/// The config phase's one result, which every later phase reads: no
/// config, a config that cannot be used (with why), or the parsed config.
/// The daemon starts with defaults unless it is `valid`.
public enum ConfigOutcome: Equatable, Sendable {
    /// Nothing found where the PE looks (defaults, no error).
    case none
    /// A source named on the kernel command line that could not be read
    /// (no location), or a file that does not validate: its errors, one a
    /// line (`FILE:LINE:COL: message`).
    case invalid(ConfigLocation?, errors: String)
    /// The config, parsed once, strictly.
    case valid(ConfigLocation, CloudBIOSConfig)

    /// The file found, valid or not.
    public var location: ConfigLocation? {
        switch self {
        case .none: return nil
        case .invalid(let l, _): return l
        case .valid(let l, _): return l
        }
    }

    /// The config when it is valid.
    public var config: CloudBIOSConfig? {
        if case .valid(_, let c) = self { return c }
        return nil
    }

    /// Why the config is not used, when one was looked for and is not.
    public var error: String? {
        if case .invalid(_, let e) = self { return e }
        return nil
    }

    /// The file the daemon and the host console are given: only a valid one.
    public var validPath: String? {
        if case .valid(let l, _) = self { return l.path }
        return nil
    }
}

/// Finds, reads and parses the config: the steps of a `ConfigDiscovery`
/// plan tried in order until one gives a file, which is parsed once.
/// What touches the outside (mounting a volume, downloading, the cloud's
/// metadata, reading a file) comes in as functions, so the logic runs in
/// tests against fakes.
public struct ConfigPhase {
    /// The directory a volume is mounted on (nil: it cannot be).
    public var mount: (Volume) -> String?
    /// Downloads a URL to a file: nil when done, else why not.
    public var fetch: (_ url: String, _ dest: String) -> String?
    /// Writes the cloud's user-data to a file: the error, or where it was found.
    public var metadata: (_ dest: String) -> (error: String?, found: String?)
    /// Whether a file exists.
    public var exists: (String) -> Bool = { Files.exists($0) }
    /// Reads and parses a config file once: the config, or every problem
    /// as `FILE:LINE:COL: message` lines.
    public var read: (String) -> Result<CloudBIOSConfig, ConfigReadError> = ConfigPhase.parse
    public var log: (String) -> Void = { _ in }

    /// Where a downloaded config is written (below the root off-target).
    public var downloadPath: String

    public init(downloadPath: String, mount: @escaping (Volume) -> String?,
                fetch: @escaping (_ url: String, _ dest: String) -> String?,
                metadata: @escaping (_ dest: String) -> (error: String?, found: String?)) {
        self.downloadPath = downloadPath; self.mount = mount; self.fetch = fetch; self.metadata = metadata
    }

    /// The phase: the first step of `plan` that gives a file wins; a step
    /// of an explicitly named source that fails leaves its error, which is
    /// the outcome when no later step gives a file. `root` prefixes the
    /// absolute paths of `cloudbios.config=/path` (off-target).
    public func run(_ plan: [ConfigLookup], explicit: Bool, root: String = "") -> ConfigOutcome {
        var found: ConfigLocation?
        var error: String?
        for step in plan {
            switch step {
            case .missing(let s):
                error = "config source \(s) not found"
            case .fetch(let url):
                if let why = fetch(url, downloadPath) { error = "cannot download the config from \(url): \(why)" }
                else { found = ConfigLocation(path: downloadPath, source: url) }
            case .metadata:
                let r = metadata(downloadPath)
                if let why = r.error { error = "cannot read the config from the cloud's user-data: \(why)" }
                else { found = ConfigLocation(path: downloadPath, source: "metadata: \(r.found ?? "?")") }
            case .file(let p):
                let path = p.hasPrefix("/") ? root + p : p
                if exists(path) { found = ConfigLocation(path: path, source: p) }
                else { error = "\(p): no such file" }
            case .volume(let v, let file, let source):
                guard let dir = mount(v) else { continue }
                let path = dir + "/" + file
                if exists(path) { found = ConfigLocation(path: path, source: "\(source) (\(v.device))", volume: v) }
                else if case .label(let l) = source, explicit {
                    error = "LABEL=\(l): no \(file) at the root of \(v.device)"
                }
            }
            if found != nil { break }
        }
        guard let found else {
            if let error {
                log("config: ERROR: \(error); starting with defaults")
                return .invalid(nil, errors: error)
            }
            log("config: no \(ConfigDiscovery.fileName) found (kernel argument, \(PELabel.config) volume, boot medium, installed disk); starting with defaults")
            return .none
        }
        log("config: using \(found.path) from \(found.source)")
        switch read(found.path) {
        case .success(let config):
            return .valid(found, config)
        case .failure(let e):
            for line in e.description.split(separator: "\n") { log("config: ERROR: \(line)") }
            log("config: the config is invalid; the daemon starts with defaults")
            return .invalid(found, errors: e.description)
        }
    }

    /// The config module's strict reading: every problem as FILE:LINE:COL: message.
    public static func parse(_ path: String) -> Result<CloudBIOSConfig, ConfigReadError> {
        let text: String
        do { text = try Files.readString(path) } catch { return .failure(ConfigReadError("\(path): cannot read: \(error)")) }
        do {
            return .success(try ConfigLoader.load(path: path, text: text))
        } catch {
            return .failure(ConfigReadError(error.errors.map(\.description).joined(separator: "\n")))
        }
    }
}

/// Why a config file cannot be used: its problems, one a line.
public struct ConfigReadError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
