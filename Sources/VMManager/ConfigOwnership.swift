import Config
import Platform

/// Who owns a VM's definition: the config file or the API. A `vms:` entry
/// of cloudbios.yaml is applied when it is new or has changed since it was
/// last applied; while it stays as it was, the definition in the state dir
/// wins, so an edit made through the API lasts across restarts and a VM
/// deleted through the API stays deleted, until the file's entry changes.
///
/// The entries last applied are kept in STATE/config-applied.json
/// (`{NAME: entry as canonical JSON}`). Without that file (a state dir from
/// before it, or a lost one) every entry counts as changed: the file is
/// applied, as it always was, and then remembered.
struct ConfigLedger: Equatable {
    static let fileName = "config-applied.json"

    /// Canonical JSON of each file entry as last applied, by VM name.
    var applied: [String: String] = [:]

    enum Decision: Equatable {
        /// The entry is new, or changed and its VM is gone: define it.
        case create
        /// The entry changed: the definition becomes the entry.
        case update
        /// The definition already is the entry: only remember it.
        case record
        /// The entry is as last applied: the state dir's definition (edited
        /// or deleted through the API, or untouched) stands.
        case keep
    }

    static func fingerprint(_ entry: VMSpec) -> String {
        var e = entry
        e.assignDiskIDs()
        return e.json.serialized()
    }

    /// What applying `entry` means, given the definition in the state dir.
    func decide(_ entry: VMSpec, existing: VMSpec?) -> Decision {
        let print = Self.fingerprint(entry)
        if applied[entry.name] == print { return .keep }
        guard let existing else { return .create }
        return Self.fingerprint(existing) == print ? .record : .update
    }

    /// Forgets the entries no longer in the file: one added back later is new.
    mutating func retain(only names: Set<String>) {
        applied = applied.filter { names.contains($0.key) }
    }

    static func load(_ path: String) -> ConfigLedger {
        guard Files.exists(path) else { return ConfigLedger() }
        guard let bytes = try? Files.read(path), case .object(let o)? = try? JSONValue.parse(bytes) else {
            Log.warning("\(path) is unreadable; applying every VM of the config file again")
            return ConfigLedger()
        }
        var ledger = ConfigLedger()
        for (name, v) in o { if let s = v.stringValue { ledger.applied[name] = s } }
        return ledger
    }

    func save(_ path: String) throws {
        try Files.writeAtomically(path, JSONValue.object(applied.mapValues { .string($0) }).serialized(pretty: true) + "\n")
    }
}
