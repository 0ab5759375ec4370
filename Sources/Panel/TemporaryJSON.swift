import Config

// Provisional JSON encoders and the VM spec body decoder, until the shared
// ones in Config land. Same names, so this file is deleted then.

extension VMSpec {
    var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "memory": .int(memory), "cpus": .int(cpus),
            "firmware": .string(firmware.rawValue), "network": .string(network.rawValue),
            "accel": .string(accel.rawValue), "autostart": .bool(autostart), "order": .int(order),
            "display": .bool(display),
            "disks": .array(disks.map {
                switch $0 {
                case .blank(let size): return .object(["size": .int64(size)])
                case .image(let n): return .object(["image": .string(n)])
                }
            }),
        ]
        if let kernel { o["kernel"] = .string(kernel) }
        if let initrd { o["initrd"] = .string(initrd) }
        if let append { o["append"] = .string(append) }
        if let cdrom { o["cdrom"] = .string(cdrom) }
        return .object(o)
    }

    static func decode(_ bytes: [UInt8]) throws(ConfigErrors) -> VMSpec {
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw ConfigErrors([error]) }
        func err(_ m: String) -> ConfigErrors { ConfigErrors([ConfigError(file: "body", mark: Mark(line: 1, column: 1), message: m)]) }
        guard case .object(let o) = v else { throw err("expected an object") }
        let known: Set<String> = ["name", "memory", "cpus", "kernel", "initrd", "append", "cdrom", "disks",
                                  "firmware", "network", "accel", "autostart", "order", "display"]
        for k in o.keys.sorted() where !known.contains(k) { throw err("unknown key '\(k)'") }
        guard let name = o["name"]?.stringValue else { throw err("missing key 'name'") }
        if let e = Names.checkVM(name) { throw err(e) }
        var s = VMSpec(name: name)
        if let m = o["memory"] {
            guard let i = m.intValue, i >= 16, i <= 1 << 22 else { throw err("memory must be 16 to 4194304 MiB") }
            s.memory = i
        }
        if let c = o["cpus"] {
            guard let i = c.intValue, i >= 1, i <= 256 else { throw err("cpus must be 1 to 256") }
            s.cpus = i
        }
        for key in ["kernel", "initrd", "cdrom"] {
            if let x = o[key] {
                guard let n = x.stringValue else { throw err("\(key) must be a string") }
                if let e = Names.checkImage(n) { throw err(e) }
                if key == "kernel" { s.kernel = n } else if key == "initrd" { s.initrd = n } else { s.cdrom = n }
            }
        }
        if let a = o["append"] {
            guard let t = a.stringValue else { throw err("append must be a string") }
            if let e = Names.checkAppend(t) { throw err(e) }
            s.append = t
        }
        if let f = o["firmware"] { guard let x = f.stringValue.flatMap(Firmware.init) else { throw err("bad firmware") }; s.firmware = x }
        if let f = o["network"] { guard let x = f.stringValue.flatMap(NetworkMode.init) else { throw err("bad network") }; s.network = x }
        if let f = o["accel"] { guard let x = f.stringValue.flatMap(Accel.init) else { throw err("bad accel") }; s.accel = x }
        if let b = o["autostart"] { guard let x = b.boolValue else { throw err("autostart must be a boolean") }; s.autostart = x }
        if let b = o["display"] { guard let x = b.boolValue else { throw err("display must be a boolean") }; s.display = x }
        if let b = o["order"] { guard let x = b.intValue else { throw err("order must be an integer") }; s.order = x }
        if let d = o["disks"] {
            guard let arr = d.arrayValue else { throw err("disks must be a list") }
            for e in arr {
                if let n = e["image"]?.stringValue {
                    if let m = Names.checkImage(n) { throw err(m) }
                    s.disks.append(.image(n))
                } else if let sz = e["size"] {
                    let bytes: Int64?
                    if let t = sz.stringValue { bytes = Sizes.parse(t) } else { bytes = sz.int64Value }
                    guard let b = bytes, b > 0 else { throw err("bad disk size") }
                    s.disks.append(.blank(size: b))
                } else { throw err("a disk needs 'size' or 'image'") }
            }
        }
        return s
    }
}

extension VMStatus {
    var json: JSONValue {
        guard case .object(var o) = spec.json else { return .null }
        o["state"] = .string(state.rawValue)
        if let pid { o["pid"] = .int(Int(pid)) }
        if let message { o["message"] = .string(message) }
        if let accel { o["accel_used"] = .string(accel) }
        if let cpuPercent { o["cpu_percent"] = .number(cpuPercent) }
        if let memoryUsedMiB { o["memory_used_mib"] = .int(memoryUsedMiB) }
        if let uptimeSeconds { o["uptime_seconds"] = .int(uptimeSeconds) }
        return .object(o)
    }
}

extension ImageInfo {
    var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name), "size": .int64(size), "in_use_by": .array(inUseBy.map { .string($0) })]
        if let sha256 { o["sha256"] = .string(sha256) }
        return .object(o)
    }
}

extension HostInfo {
    var json: JSONValue {
        .object([
            "hostname": .string(hostname), "version": .string(version), "cpu_model": .string(cpuModel),
            "cpus": .int(cpus), "memory_total_mib": .int(memoryTotalMiB), "memory_available_mib": .int(memoryAvailableMiB),
            "accel": .string(accel), "accel_reason": .string(accelReason), "uptime_seconds": .int(uptimeSeconds),
            "load_average": .array(loadAverage.map { .number($0) }),
        ])
    }
}

extension TaskInfo {
    var json: JSONValue {
        var o: [String: JSONValue] = ["id": .string(id), "kind": .string(kind), "state": .string(state.rawValue),
                                      "progress": .int(progress), "message": .string(message)]
        if let r = resultJSON { o["result"] = (try? JSONValue.parse(r)) ?? .string(r) }
        return .object(o)
    }
}
