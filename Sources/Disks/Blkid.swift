import CBlkid
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// A file or device opened read-only for probing. Discovery never opens
/// anything for writing.
final class ReadOnlyHandle {
    let fd: Int32
    let path: String
    init(_ path: String) throws {
        self.path = path
        fd = try syscall("open \(path)") { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
    }
    deinit { close(fd) }
}

/// One libblkid probe over a range of an open file or device.
final class BlkidProbe {
    private let pr: blkid_probe

    init(_ handle: ReadOnlyHandle, offset: Int64 = 0, size: Int64 = 0) throws {
        guard let p = blkid_new_probe() else { throw SystemError("blkid_new_probe", errno: ENOMEM) }
        pr = p
        if blkid_probe_set_device(pr, handle.fd, offset, size) != 0 {
            throw SystemError("blkid probe \(handle.path) at \(offset)", errno: EIO)
        }
    }
    deinit { blkid_free_probe(pr) }

    private func value(_ name: String) -> String? {
        var data: UnsafePointer<CChar>? = nil
        var len = 0
        guard blkid_probe_lookup_value(pr, name, &data, &len) == 0, let d = data else { return nil }
        let s = String(cString: d)
        return s.isEmpty ? nil : s
    }

    /// The filesystem (or RAID/LVM/swap signature) in the probed range.
    /// `only`: the filesystem types to look for (nil: every type libblkid
    /// knows, RAID and LVM members included).
    func filesystem(only: [String]? = nil) -> FilesystemInfo? {
        blkid_probe_enable_partitions(pr, 0)
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(pr, Int32(BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE))
        if let only {
            var names = only.map { strdup($0) } + [nil]
            defer { for n in names { free(n) } }
            _ = names.withUnsafeMutableBufferPointer { blkid_probe_filter_superblocks_type(pr, BLKID_FLTR_ONLYIN, $0.baseAddress!) }
        }
        let rc = blkid_do_safeprobe(pr)
        if rc == -2 { return FilesystemInfo(type: "ambiguous") }
        guard rc == 0, let type = value("TYPE") else { return nil }
        return FilesystemInfo(type: type, label: value("LABEL"), uuid: value("UUID"))
    }

    /// The partition table type and its entries (bytes).
    func partitions() -> (table: String?, entries: [PartitionInfo]) {
        blkid_probe_enable_superblocks(pr, 0)
        blkid_probe_enable_partitions(pr, 1)
        blkid_probe_set_partitions_flags(pr, Int32(BLKID_PARTS_ENTRY_DETAILS))
        guard blkid_do_safeprobe(pr) == 0, let table = value("PTTYPE") else { return (nil, []) }
        guard let ls = blkid_probe_get_partitions(pr) else { return (table, []) }
        var out: [PartitionInfo] = []
        let n = blkid_partlist_numof_partitions(ls)
        for i in 0..<max(n, 0) {
            guard let par = blkid_partlist_get_partition(ls, i) else { continue }
            var p = PartitionInfo(number: Int(blkid_partition_get_partno(par)),
                                  start: Int64(blkid_partition_get_start(par)) * 512,
                                  size: Int64(blkid_partition_get_size(par)) * 512)
            if let t = blkid_partition_get_type_string(par) {
                p.type = String(cString: t).lowercased()
            } else {
                let t = blkid_partition_get_type(par)
                p.type = "0x" + String(t, radix: 16)
            }
            if let nm = blkid_partition_get_name(par) {
                let s = String(cString: nm)
                p.name = s.isEmpty ? nil : s
            }
            out.append(p)
        }
        return (table, out)
    }
}

/// Probes the contents of a disk or image file: the partition table, the
/// partitions and the filesystems in each, and a whole-disk filesystem.
public enum Probe {
    public struct Contents: Sendable, Equatable {
        public var partitionTable: String?
        public var partitions: [PartitionInfo]
        public var filesystem: FilesystemInfo?
    }

    /// The filesystem on a block device or a partition, as `blkid` reports
    /// it (nil when there is none or the signatures are ambiguous), probed
    /// in this process: at boot a `blkid` process costs more than the probe.
    /// `only` limits the probe to those types (PID 1 looks only for what it
    /// can mount: each other type is a read, some at the end of the device).
    public static func filesystem(of path: String, only: [String]? = nil) -> FilesystemInfo? {
        guard let h = try? ReadOnlyHandle(path), let fs = (try? BlkidProbe(h))?.filesystem(only: only), fs.type != "ambiguous" else { return nil }
        return fs
    }

    public static func contents(of path: String, size: Int64) throws -> Contents {
        let h = try ReadOnlyHandle(path)
        let whole = try BlkidProbe(h)
        let (table, entries) = whole.partitions()
        var parts = entries
        for i in parts.indices where parts[i].size > 0 && parts[i].start + parts[i].size <= size {
            let p = try BlkidProbe(h, offset: parts[i].start, size: parts[i].size)
            parts[i].filesystem = p.filesystem()
        }
        var fs = try BlkidProbe(h).filesystem()
        if table != nil && fs?.type == "ambiguous" { fs = nil }
        return Contents(partitionTable: table, partitions: parts, filesystem: fs)
    }
}
