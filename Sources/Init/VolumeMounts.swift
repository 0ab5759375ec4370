#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization

/// The one owner of the PE's volume mounts: each volume is mounted once,
/// read-only, below `/run/cloudbios/media`, and that mount is handed to
/// whoever asks — the config search, the payload, the first-run save —
/// from any thread. A caller asking while another is mounting the same
/// device waits for that mount instead of racing it (two mounts of one
/// ISO 9660 device answer EBUSY).
public final class VolumeMounts: Sendable {
    enum Entry: Equatable {
        case mounting(String)
        case mounted(String)
        case failed(String)
    }

    /// Mounts `device` (`type`) read-only on a directory; throws its error.
    public typealias Mounter = @Sendable (_ device: String, _ dir: String, _ type: String) throws -> Void

    private let state = Mutex<[String: Entry]>([:])
    private let base: String
    private let mounter: Mounter
    private let existing: @Sendable (String) -> String?

    /// `existing` finds a directory where a device is mounted already (the
    /// mount table), so a mount made before this registry is reused.
    public init(base: String = "/run/cloudbios/media",
                mounter: @escaping Mounter = VolumeMounts.mountReadOnly,
                existing: @escaping @Sendable (String) -> String? = { dev in
                    Mount.table().first { $0.source == dev && $0.target.hasPrefix("/run/cloudbios/media/") }?.target
                }) {
        self.base = base
        self.mounter = mounter
        self.existing = existing
    }

    /// The directory `v` is mounted on, mounting it first when nobody has;
    /// nil (with `log` told why, once) when it cannot be mounted.
    public func mount(_ v: Volume, log: (String) -> Void) -> String? {
        // claim the device (and its directory), or wait for whoever has
        var dir = ""
        while true {
            let claimed: Entry? = state.withLock { s in
                if let e = s[v.device] { return e }
                dir = Self.directory(for: v, base: base, taken: Set(s.values.compactMap(\.directory)))
                s[v.device] = .mounting(dir)
                return nil
            }
            switch claimed {
            case .mounted(let d): return d
            case .failed: return nil
            case .mounting: usleep(5_000); continue
            case nil: break
            }
            break
        }
        if let d = existing(v.device) {
            state.withLock { $0[v.device] = .mounted(d) }
            return d
        }
        let type = v.type ?? "auto"
        do {
            try mounter(v.device, dir, type)
            state.withLock { $0[v.device] = .mounted(dir) }
            return dir
        } catch {
            let why = "\(error)"
            log("volume: cannot mount \(v.device) (\(type)): \(why)")
            state.withLock { $0[v.device] = .failed(why) }
            return nil
        }
    }

    /// Mounts `v` read-write on `dir` — the data partition on the state
    /// directory — and records it, so nobody mounts that device again.
    public func mountReadWrite(_ v: Volume, on dir: String) throws {
        let taken: String? = state.withLock { s in
            if let d = s[v.device]?.directory { return d }
            s[v.device] = .mounting(dir)
            return nil
        }
        if let d = taken { throw SystemError("mount \(v.device) on \(dir) (it is on \(d))", errno: EBUSY) }
        do {
            try Mount.mount(v.device, on: dir, type: v.type ?? "ext4", flags: UInt(MS_NOATIME))
            state.withLock { $0[v.device] = .mounted(dir) }
        } catch {
            state.withLock { $0[v.device] = .failed("\(error)") }
            throw error
        }
    }

    /// Mounts a volume read-only. A whole disk that also has partitions (a
    /// hybrid ISO written to a USB stick, whose ISO 9660 filesystem starts
    /// at sector 0) is mounted through a read-only loop device over it: a
    /// filesystem mounted on the disk itself would claim it whole, and
    /// none of its partitions (the stick's CBCONFIG) could then be mounted
    /// or formatted.
    public static func mountReadOnly(_ device: String, on dir: String, type: String) throws {
        let flags = UInt(MS_RDONLY | MS_NOSUID | MS_NODEV)
        guard hasPartitions(device) else {
            try Mount.mount(device, on: dir, type: type, flags: flags)
            return
        }
        try Mount.throughLoop(device, on: dir, type: type, flags: flags)
    }

    /// Whether `device` is a whole disk with partitions.
    static func hasPartitions(_ device: String, sys: String = "/sys") -> Bool {
        let name = String(device.split(separator: "/").last ?? "")
        guard !name.isEmpty, Files.isDirectory(sys + "/block/" + name) else { return false }
        return Files.list(sys + "/block/" + name).contains { $0.hasPrefix(name) && Files.exists(sys + "/block/\(name)/\($0)/partition") }
    }

    /// The volume's directory: named by its label (the first boot medium
    /// is `media/CLOUDBIOS`), by label and device when another device with
    /// the same label (a hybrid ISO's disk and its partition) holds that
    /// name, by device without a label.
    static func directory(for v: Volume, base: String, taken: Set<String>) -> String {
        let dev = String(v.device.split(separator: "/").last ?? "vol")
        if let label = v.label, Self.safeName(label) {
            let d = base + "/" + label
            if !taken.contains(d) { return d }
            return base + "/" + label + "-" + dev
        }
        return base + "/" + dev
    }

    /// A label usable as a directory name as it is.
    static func safeName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s != "." && s != ".."
            && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
    }
}

extension VolumeMounts.Entry {
    /// The directory this entry holds or reserves.
    var directory: String? {
        switch self {
        case .mounting(let d), .mounted(let d): return d
        case .failed: return nil
        }
    }
}
