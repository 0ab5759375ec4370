/// The API's JSON renderings. Keys match the config file's, so a VM read
/// with GET can be sent back with PUT.

extension DiskSpec: JSONRepresentable {
    public var json: JSONValue { .fromWritten { out in JSONObjectWriter.write(into: &out) { writeMembers(&$0) } } }

    func writeMembers(_ w: inout JSONObjectWriter) {
        if let id { w.string("id", id) }
        if let image { w.string("image", image) }
        if let size { w.string("size", Sizes.format(size)) }
    }
}

extension CloudInitSpec: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = ["ssh_authorized_keys": .array(sshAuthorizedKeys.map { .string($0) })]
        if let hostname { o["hostname"] = .string(hostname) }
        if let user { o["user"] = .string(user) }
        if let passwordHash { o["password_hash"] = .string(passwordHash) }
        if let userData { o["user_data"] = .string(userData) }
        switch network {
        case .dhcp: o["network"] = .string("dhcp")
        case .staticIPv4(let a, let g, let d):
            var n: [String: JSONValue] = ["address": .string(a), "dns": .array(d.map { .string($0) })]
            if let g { n["gateway"] = .string(g) }
            o["network"] = .object(n)
        }
        return .object(o)
    }
}

extension VMSpec: JSONRepresentable {
    public var json: JSONValue { .fromWritten { writeJSON(into: &$0) } }

    /// The VM's JSON (as `json`), written straight into `out`; `extra`
    /// members, in key order, are merged in (a status's).
    public func writeJSON(into out: inout [UInt8], extra: [(StaticString, JSONValue)] = []) {
        JSONObjectWriter.write(into: &out, extra: extra) { w in
            w.string("accel", accel.rawValue)
            w.bool("agent", agent)
            if let append { w.string("append", append) }
            w.bool("autostart", autostart)
            if backup { w.bool("backup", true) }
            if let boot { w.value("boot", .array(boot.map { .string($0.rawValue) })) }
            if let cdrom { w.string("cdrom", cdrom) }
            if let cloudInit { w.value("cloud_init", cloudInit.json) }
            w.int("cpus", cpus)
            w.objects("disks", disks) { d, o in d.writeMembers(&o) }
            w.bool("display", display)
            w.string("firmware", firmware.rawValue)
            w.value("forwards", .array(forwards.map {
                .object(["host": .int($0.host), "guest": .int($0.guest), "proto": .string($0.proto.rawValue)])
            }))
            if let initrd { w.string("initrd", initrd) }
            if let kernel { w.string("kernel", kernel) }
            w.int("memory", memory)
            w.string("name", name)
            w.string("network", network.rawValue)
            w.int("order", order)
            if template { w.bool("template", true) }
        }
    }
}

extension VMStatus: JSONRepresentable {
    public var json: JSONValue { .fromWritten { writeJSON(into: &$0) } }

    /// The status's JSON (as `json`): its spec's members and its own,
    /// written straight into `out`.
    public func writeJSON(into out: inout [UInt8]) {
        var own: [(StaticString, JSONValue)] = []
        own.reserveCapacity(8)
        if let accel { own.append(("accel_in_use", .string(accel))) }
        own.append(("addresses", .array(addresses.map {
            .object(["interface": .string($0.interface), "address": .string($0.address), "prefix": .int($0.prefix),
                     "family": .string($0.family), "source": .string($0.source)])
        })))
        if let cpuPercent { own.append(("cpu_percent", .number((cpuPercent * 10).rounded() / 10))) }
        if let memoryUsedMiB { own.append(("memory_used_mib", .int(memoryUsedMiB))) }
        if let message { own.append(("message", .string(message))) }
        if let pid { own.append(("pid", .int(Int(pid)))) }
        own.append(("state", .string(state.rawValue)))
        if let uptimeSeconds { own.append(("uptime_seconds", .int(uptimeSeconds))) }
        spec.writeJSON(into: &out, extra: own)
    }
}

/// A list of statuses as a JSON array, written straight into bytes.
extension Array where Element == VMStatus {
    public func writeJSON(into out: inout [UInt8]) {
        out.append(0x5b)
        for (i, s) in enumerated() {
            if i > 0 { out.append(0x2c) }
            s.writeJSON(into: &out)
        }
        out.append(0x5d)
    }
}

extension ImageInfo: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name), "size": .int64(size), "in_use_by": .array(inUseBy.map { .string($0) })]
        if let sha256 { o["sha256"] = .string(sha256) }
        if let format { o["format"] = .string(format) }
        if let virtualSize { o["virtual_size"] = .int64(virtualSize) }
        return .object(o)
    }
}

extension HostInfo: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "hostname": .string(hostname), "version": .string(version),
            "cpu": .object(["model": .string(cpuModel), "count": .int(cpus)]),
            "memory": .object(["total_mib": .int(memoryTotalMiB), "available_mib": .int(memoryAvailableMiB)]),
            "accel": .object(["mode": .string(accel), "reason": .string(accelReason)]),
            "uptime_seconds": .int(uptimeSeconds),
            "load_average": .array(loadAverage.map { .number($0) }),
            "network": .object([
                "interfaces": .array(interfaces.map(\.json)),
                "gateways": .array(gateways.map { .string($0) }),
                "dns": .array(dns.map { .string($0) }),
            ]),
        ]
        if let configuredNetwork, case .object(var n) = o["network"] {
            n["configured"] = configuredNetwork
            o["network"] = .object(n)
        }
        if let storage { o["storage"] = storage.json }
        if let system { o["system"] = system }
        return .object(o)
    }
}

extension HostInterface: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "mac": .string(mac), "state": .string(state), "mtu": .int(mtu),
            "addresses": .array(addresses.map { .string($0) }), "kind": .string(kind),
        ]
        if let master { o["master"] = .string(master) }
        return .object(o)
    }
}

extension TaskInfo: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "id": .string(id), "kind": .string(kind), "state": .string(state.rawValue),
            "progress": .int(progress), "message": .string(message),
        ]
        if let r = resultJSON, let v = try? JSONValue.parse(r) { o["result"] = v }
        return .object(o)
    }
}

extension NetworkConfig.Interfaces: JSONRepresentable {
    /// `"dhcp"`, or the entries with the config file's keys.
    public var json: JSONValue {
        switch self {
        case .dhcp: return .string("dhcp")
        case .list(let entries): return .array(entries.map(\.json))
        }
    }
}

extension InterfaceConfig: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = ["dhcp": .bool(dhcp), "addresses": .array(addresses.map { .string($0) }),
                                      "dns": .array(dns.map { .string($0) })]
        if let match { o["match"] = .string(match) }
        if let name { o["name"] = .string(name) }
        if let bond { o["bond"] = .object(["members": .array(bond.members.map { .string($0) }), "mode": .string(bond.mode)]) }
        if let vlan { o["vlan"] = .object(["link": .string(vlan.link), "id": .int(vlan.id)]) }
        if let gateway { o["gateway"] = .string(gateway) }
        if let gateway6 { o["gateway6"] = .string(gateway6) }
        if let mtu { o["mtu"] = .int(mtu) }
        return .object(o)
    }
}
