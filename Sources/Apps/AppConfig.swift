import Config
import Platform

/// Who owns an app's definition: the config file or the API, by the rules
/// the VMs follow. An `apps:` entry of cloudbios.yaml is applied when it is
/// new or has changed since it was last applied; while it stays as it was,
/// the app as the state dir keeps it wins, so an app removed through the API
/// stays removed until the file's entry changes. An app is its image and
/// settings, nothing else: a changed entry replaces the app (its new image
/// pulled first, so a pull that fails leaves the old app as it was).
///
/// The entries last applied are kept in STATE/apps/config-applied.json
/// (`{NAME: spec as canonical JSON}`); without that file every entry counts
/// as changed.
struct AppConfigLedger: Equatable {
    static let fileName = "config-applied.json"

    var applied: [String: String] = [:]

    enum Decision: Equatable { case create, update, record, keep }

    static func fingerprint(_ spec: AppSpec) -> String { spec.json.serialized() }

    func decide(_ entry: AppSpec, existing: AppSpec?) -> Decision {
        let print = Self.fingerprint(entry)
        if applied[entry.name] == print { return .keep }
        guard let existing else { return .create }
        return Self.fingerprint(existing) == print ? .record : .update
    }

    mutating func retain(only names: Set<String>) { applied = applied.filter { names.contains($0.key) } }

    static func load(_ path: String) -> AppConfigLedger {
        guard Files.exists(path) else { return AppConfigLedger() }
        guard let bytes = try? Files.read(path, limit: 16 << 20), case .object(let o)? = try? JSONValue.parse(bytes) else {
            Log.warning("\(path) is unreadable; applying every app of the config file again")
            return AppConfigLedger()
        }
        var ledger = AppConfigLedger()
        for (name, v) in o { if let s = v.stringValue { ledger.applied[name] = s } }
        return ledger
    }

    func save(_ path: String) throws {
        try Files.writeAtomically(path, JSONValue.object(applied.mapValues { .string($0) }).serialized(pretty: true) + "\n")
    }
}

extension AppManager {
    /// Applies the config file's `apps:` (after `reattach`): new entries are
    /// pulled and started, changed ones replace their app, the others are
    /// left as they are. Returns what failed, one line per app; a failed
    /// entry is tried again at the next start.
    public func applyConfig(_ entries: [AppEntry]) async -> [String] {
        let path = cache.root + "/" + AppConfigLedger.fileName
        var ledger = AppConfigLedger.load(path)
        var failures: [String] = []
        func save() {
            do { try ledger.save(path) } catch { failures.append("cannot save \(path): \(error)") }
        }
        let before = ledger
        ledger.retain(only: Set(entries.map(\.name)))
        if ledger != before { save() }
        for entry in entries {
            let spec = AppSpec(entry: entry)
            do throws(AppError) {
                switch ledger.decide(spec, existing: apps[spec.name]?.spec) {
                case .keep:
                    continue
                case .record:
                    break
                case .create:
                    _ = try await create(spec)
                case .update:
                    let puller = ImagePuller(cache: cache, insecure: options.insecureRegistries)
                    let image = spec.image
                    _ = try await offload { () throws(AppError) -> PulledImage in try puller.pull(image) }
                    try await checkPorts(spec)
                    try await delete(spec.name)
                    _ = try await create(spec)
                    Log.info("app \(spec.name): its entry in the config file changed; the app was replaced")
                }
                ledger.applied[spec.name] = AppConfigLedger.fingerprint(spec)
                save()
            } catch {
                failures.append("app \(spec.name): \(error)")
            }
        }
        return failures
    }
}
