/// The API's JSON renderings. Keys match the config file's, so a VM read
/// with GET can be sent back with PUT.

extension DiskSpec: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = [:]
        if let id { o["id"] = .string(id) }
        if let image { o["image"] = .string(image) }
        if let size { o["size"] = .string(Sizes.format(size)) }
        return .object(o)
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
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "memory": .int(memory), "cpus": .int(cpus),
            "disks": .array(disks.map(\.json)), "firmware": .string(firmware.rawValue),
            "network": .string(network.rawValue), "accel": .string(accel.rawValue),
            "autostart": .bool(autostart), "order": .int(order), "display": .bool(display),
        ]
        if let kernel { o["kernel"] = .string(kernel) }
        if let initrd { o["initrd"] = .string(initrd) }
        if let append { o["append"] = .string(append) }
        if let cdrom { o["cdrom"] = .string(cdrom) }
        if let cloudInit { o["cloud_init"] = cloudInit.json }
        o["forwards"] = .array(forwards.map { .object(["host": .int($0.host), "guest": .int($0.guest), "proto": .string($0.proto.rawValue)]) })
        o["agent"] = .bool(agent)
        if let boot { o["boot"] = .array(boot.map { .string($0.rawValue) }) }
        if backup { o["backup"] = .bool(true) }
        if template { o["template"] = .bool(true) }
        return .object(o)
    }
}

extension VMStatus: JSONRepresentable {
    public var json: JSONValue {
        guard case .object(var o) = spec.json else { return .null }
        o["state"] = .string(state.rawValue)
        if let pid { o["pid"] = .int(Int(pid)) }
        if let message { o["message"] = .string(message) }
        if let accel { o["accel_in_use"] = .string(accel) }
        if let cpuPercent { o["cpu_percent"] = .number((cpuPercent * 10).rounded() / 10) }
        if let memoryUsedMiB { o["memory_used_mib"] = .int(memoryUsedMiB) }
        if let uptimeSeconds { o["uptime_seconds"] = .int(uptimeSeconds) }
        o["addresses"] = .array(addresses.map {
            .object(["interface": .string($0.interface), "address": .string($0.address), "prefix": .int($0.prefix),
                     "family": .string($0.family), "source": .string($0.source)])
        })
        return .object(o)
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
