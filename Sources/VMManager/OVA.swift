import Config
import Platform

/// An OVA (a tar holding an OVF descriptor and its disks), read as far as
/// a VM needs: the disks' files, memory, CPUs and firmware. Nothing in it
/// is trusted: member names are checked before anything is extracted, and
/// a disk must be a member of the archive itself.
struct OVFDescriptor: Equatable {
    var name: String?
    var memoryMiB: Int?
    var cpus: Int?
    var uefi = false
    /// The disks' files, in the order the descriptor lists them.
    var diskFiles: [String] = []

    /// The attributes of each `<tag …>` (namespace prefixes dropped).
    static func tags(_ name: String, in xml: String) -> [[String: String]] {
        var out: [[String: String]] = []
        var rest = Substring(xml)
        while let r = rest.firstRange(of: "<") {
            rest = rest[r.upperBound...]
            let end = rest.firstIndex(of: ">") ?? rest.endIndex
            let tag = rest[..<end]
            rest = rest[end...]
            let tagName = tag.prefix { !$0.isWhitespace && $0 != "/" && $0 != ">" }
            guard (tagName.split(separator: ":").last.map(String.init) ?? "") == name else { continue }
            var attrs: [String: String] = [:]
            var a = tag.dropFirst(tagName.count)
            while let eq = a.firstIndex(of: "=") {
                let key = a[..<eq].trimmingCharacters()
                a = a[a.index(after: eq)...].drop { $0 == " " }
                guard let q = a.first, q == "\"" || q == "'" else { break }
                a = a.dropFirst()
                let close = a.firstIndex(of: q) ?? a.endIndex
                attrs[String(key.split(separator: ":").last ?? Substring(key))] = String(a[..<close])
                a = close < a.endIndex ? a[a.index(after: close)...] : ""
            }
            out.append(attrs)
        }
        return out
    }

    /// The text of each `<tag>…</tag>` (namespace prefixes dropped).
    static func texts(_ name: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = Substring(xml)
        while let r = rest.firstRange(of: "<") {
            rest = rest[r.upperBound...]
            let tagName = rest.prefix { !$0.isWhitespace && $0 != "/" && $0 != ">" }
            guard (tagName.split(separator: ":").last.map(String.init) ?? "") == name, let gt = rest.firstIndex(of: ">") else { continue }
            rest = rest[rest.index(after: gt)...]
            let end = rest.firstRange(of: "</")?.lowerBound ?? rest.endIndex
            out.append(rest[..<end].trimmingCharacters())
        }
        return out
    }

    static func parse(_ xml: String) throws(VMError) -> OVFDescriptor {
        var d = OVFDescriptor()
        let files = Dictionary(tags("File", in: xml).compactMap { a in a["id"].flatMap { id in a["href"].map { (id, $0) } } },
                               uniquingKeysWith: { first, _ in first })
        for disk in tags("Disk", in: xml) {
            guard let ref = disk["fileRef"], let href = files[ref] else { continue }
            d.diskFiles.append(href)
        }
        guard !d.diskFiles.isEmpty else { throw .invalid("the OVF describes no disk with a file") }
        d.name = texts("Name", in: xml).first
        // <Item>s: ResourceType 3 = CPUs, 4 = memory (VirtualQuantity, MB unless AllocationUnits says otherwise)
        var rest = Substring(xml)
        while let r = rest.firstRange(of: "<Item") ?? rest.firstRange(of: ":Item") {
            let end = rest[r.upperBound...].firstRange(of: "Item>")?.upperBound ?? rest.endIndex
            let item = String(rest[r.lowerBound..<end])
            rest = rest[end...]
            let type = texts("ResourceType", in: item).first
            let quantity = texts("VirtualQuantity", in: item).first.flatMap { Int($0) }
            let units = texts("AllocationUnits", in: item).first?.lowercased() ?? ""
            if type == "3", let q = quantity { d.cpus = q }
            if type == "4", let q = quantity { d.memoryMiB = units.contains("2^30") || units.hasPrefix("gigabyte") ? q * 1024 : q }
        }
        d.uefi = xml.contains("firmware=\"efi\"") || xml.contains("firmware\" vmw:value=\"efi\"")
        return d
    }

    /// A member name that stays inside the archive.
    static func safeMember(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && !name.hasPrefix("/") && !name.hasPrefix("-") && !name.split(separator: "/").contains("..")
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\\") }
    }
}
