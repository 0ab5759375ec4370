import Config

/// VM definitions on disk (`vms/NAME.json`): the same keys as a `vms:` entry
/// of the config file.
extension VMSpec {
    var definitionJSON: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "memory": .int(memory), "cpus": .int(cpus),
            "firmware": .string(firmware.rawValue), "network": .string(network.rawValue),
            "accel": .string(accel.rawValue), "autostart": .bool(autostart), "order": .int(order),
            "display": .bool(display),
        ]
        if let kernel { o["kernel"] = .string(kernel) }
        if let initrd { o["initrd"] = .string(initrd) }
        if let append { o["append"] = .string(append) }
        if let cdrom { o["cdrom"] = .string(cdrom) }
        if !disks.isEmpty {
            o["disks"] = .array(disks.map { d in
                switch d {
                case .blank(let size): .object(["size": .string(Sizes.format(size))])
                case .image(let n): .object(["image": .string(n)])
                }
            })
        }
        return .object(o)
    }

    init(definition v: JSONValue) throws(APIError) {
        guard let name = v["name"]?.stringValue else { throw .unprocessable("definition has no name") }
        self.init(name: name)
        if let m = v["memory"]?.intValue { memory = m }
        if let c = v["cpus"]?.intValue { cpus = c }
        kernel = v["kernel"]?.stringValue
        initrd = v["initrd"]?.stringValue
        append = v["append"]?.stringValue
        cdrom = v["cdrom"]?.stringValue
        if let f = v["firmware"]?.stringValue.flatMap(Firmware.init(rawValue:)) { firmware = f }
        if let n = v["network"]?.stringValue.flatMap(NetworkMode.init(rawValue:)) { network = n }
        if let a = v["accel"]?.stringValue.flatMap(Accel.init(rawValue:)) { accel = a }
        autostart = v["autostart"]?.boolValue ?? false
        order = v["order"]?.intValue ?? 0
        display = v["display"]?.boolValue ?? false
        for d in v["disks"]?.arrayValue ?? [] {
            if let s = d["size"]?.stringValue, let b = Sizes.parse(s) { disks.append(.blank(size: b)) }
            else if let b = d["size"]?.int64Value { disks.append(.blank(size: b)) }
            else if let i = d["image"]?.stringValue { disks.append(.image(i)) }
            else { throw .unprocessable("definition of '\(name)' has a malformed disk") }
        }
    }

    /// Checks what the manager relies on, whatever decoded the spec.
    func validate() throws(APIError) {
        if let p = Names.checkVM(name) { throw .unprocessable(p) }
        guard (16...1_048_576).contains(memory) else { throw .unprocessable("memory must be between 16 and 1048576 MiB") }
        guard (1...256).contains(cpus) else { throw .unprocessable("cpus must be between 1 and 256") }
        for n in [kernel, initrd, cdrom].compactMap({ $0 }) {
            if let p = Names.checkImage(n) { throw .unprocessable(p) }
        }
        if let append {
            if let p = Names.checkAppend(append) { throw .unprocessable(p) }
        }
        if kernel == nil && (initrd != nil || append != nil) { throw .unprocessable("initrd and append need kernel") }
        guard disks.count <= 16 else { throw .unprocessable("at most 16 disks") }
        for d in disks {
            switch d {
            case .blank(let size):
                guard size >= 1 << 20 && size <= 64 << 40 else { throw .unprocessable("disk size must be between 1M and 64T") }
            case .image(let n):
                if let p = Names.checkImage(n) { throw .unprocessable(p) }
            }
        }
    }

    /// Store images this VM refers to.
    var imageNames: [String] {
        var names = [kernel, initrd, cdrom].compactMap { $0 }
        for case .image(let n) in disks { names.append(n) }
        return names
    }
}
