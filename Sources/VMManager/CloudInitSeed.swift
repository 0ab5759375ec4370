#if canImport(Glibc)
import Glibc
#endif
import Config
import Platform
import QEMU

/// The cloud-init NoCloud seed of a VM: `meta-data`, `user-data` and
/// `network-config` on a small FAT volume labelled CIDATA, attached as a
/// read-only drive of its own. Rendering is pure; `build` writes the volume.
/// The instance id follows the seed's content (like Proxmox's), so a
/// changed `cloud_init:` is applied at the next boot, and a clone (another
/// name) is a new instance.
public struct CloudInitSeed: Sendable, Equatable {
    public var metaData: String
    public var userData: String
    public var networkConfig: String
    public var instanceID: String

    public static let defaultUser = "debian"

    public init(vm: VMSpec, mac: String) {
        let c = vm.cloudInit ?? CloudInitSpec()
        let hostname = c.hostname ?? vm.name
        let user = c.user ?? Self.defaultUser

        var cc = "#cloud-config\n"
        cc += "hostname: \(hostname)\n"
        cc += "fqdn: \(hostname)\n"
        cc += "manage_etc_hosts: true\n"
        cc += "users:\n"
        cc += "  - name: \(user)\n"
        cc += "    gecos: \(user)\n"
        cc += "    groups: [adm, sudo]\n"
        cc += "    shell: /bin/bash\n"
        cc += "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n"
        if let h = c.passwordHash {
            cc += "    lock_passwd: false\n"
            cc += "    passwd: \(YAMLText.quoted(h))\n"
        } else {
            cc += "    lock_passwd: true\n"
        }
        if !c.sshAuthorizedKeys.isEmpty {
            cc += "    ssh_authorized_keys:\n"
            for k in c.sshAuthorizedKeys { cc += "      - \(YAMLText.quoted(k))\n" }
        }
        cc += "ssh_pwauth: \(c.passwordHash == nil ? "false" : "true")\n"
        if let extra = c.userData, !extra.isEmpty {
            // two parts: ours first, the user's after it (cloud-init merges them)
            let boundary = "==CLOUDBIOS-\(Self.digest(cc + extra).prefix(16))=="
            userData = "Content-Type: multipart/mixed; boundary=\"\(boundary)\"\nMIME-Version: 1.0\n\n"
                + "--\(boundary)\nContent-Type: text/cloud-config; charset=\"utf-8\"\n\n\(cc)\n"
                + "--\(boundary)\nContent-Type: \(Self.mimeType(of: extra)); charset=\"utf-8\"\n\n\(extra)\(extra.hasSuffix("\n") ? "" : "\n")\n"
                + "--\(boundary)--\n"
        } else {
            userData = cc
        }

        var net = "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"\(mac)\"\n"
        switch c.network {
        case .dhcp:
            net += "    dhcp4: true\n"
        case .staticIPv4(let address, let gateway, let dns):
            net += "    addresses: [\(address)]\n"
            if let gateway { net += "    routes:\n      - to: 0.0.0.0/0\n        via: \(gateway)\n" }
            if !dns.isEmpty { net += "    nameservers:\n      addresses: [\(dns.joined(separator: ", "))]\n" }
        }
        networkConfig = net
        instanceID = "iid-\(vm.name)-" + String(Self.digest(vm.name + "\n" + userData + "\n" + net).prefix(12))
        metaData = "instance-id: \(instanceID)\nlocal-hostname: \(hostname)\n"
    }

    /// The MIME type of a user-data part, from its first line.
    static func mimeType(of part: String) -> String {
        if part.hasPrefix("#cloud-config") { return "text/cloud-config" }
        if part.hasPrefix("#!") { return "text/x-shellscript" }
        if part.hasPrefix("#cloud-boothook") { return "text/cloud-boothook" }
        return "text/plain"
    }

    /// A stable name for the content, in hex.
    static func digest(_ s: String) -> String { String(QEMUCommand.fnv1a(s), radix: 16) }

    /// Writes the seed volume at `path` (only when its content changed:
    /// the files are compared with the ones beside it).
    public func build(at path: String) async throws {
        let dir = Files.parent(of: path)
        let stamp = path + ".content"
        let content = metaData + "\0" + userData + "\0" + networkConfig
        if Files.exists(path), (try? Files.readString(stamp)) == content { return }
        let work = dir + "/.cidata.tmp"
        Files.removeTree(work)
        try Files.makeDirectories(work, mode: 0o700)
        defer { Files.removeTree(work) }
        for (name, text) in [("meta-data", metaData), ("user-data", userData), ("network-config", networkConfig)] {
            try Files.writeAtomically(work + "/" + name, text, mode: 0o600)
        }
        let img = work + "/cidata.img"
        try await runTool(["mkfs.fat", "-n", "CIDATA", "-C", img, "1024"])
        for name in ["meta-data", "user-data", "network-config"] {
            try await runTool(["mcopy", "-i", img, work + "/" + name, "::/" + name])
        }
        try Files.writeAtomically(path, Files.read(img), mode: 0o600)
        try Files.writeAtomically(stamp, content, mode: 0o600)
    }
}

/// What `qemu-img info` says of an image file.
enum DiskImage {
    /// Formats a disk can be a copy-on-write overlay of.
    static let backingFormats = ["qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", "qed", "parallels"]

    struct Info: Sendable, Equatable {
        var format: String
        var virtualSize: Int64
    }

    static func info(_ path: String) async throws -> Info {
        guard let tool = Launcher.which("qemu-img") else { throw ManagerError.tool("qemu-img is not installed") }
        // --force-share: a running VM's disk can still be looked at
        let launcher = Launcher(tool, ["info", "--force-share", "--output=json", path])
        let (status, output) = try await blocking { try launcher.run(mergeError: false) }
        guard status == 0 else { throw ManagerError.tool("qemu-img info: cannot read \(String(path.split(separator: "/").last ?? ""))") }
        return try parse(output)
    }

    static func parse(_ json: String) throws -> Info {
        guard let v = try? JSONValue.parse(Array(json.utf8)), let format = v["format"]?.stringValue,
              let size = v["virtual-size"]?.int64Value else {
            throw ManagerError.tool("qemu-img info gave no format and size")
        }
        return Info(format: format, virtualSize: size)
    }
}
