/// The API's JSON renderings. Keys match the config file's, so a VM read
/// with GET can be sent back with PUT.

extension DiskSpec: JSONRepresentable {
    public var json: JSONValue {
        switch self {
        case .blank(let size): return .object(["size": .string(Sizes.format(size))])
        case .image(let n): return .object(["image": .string(n)])
        }
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
        return .object(o)
    }
}

extension ImageInfo: JSONRepresentable {
    public var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name), "size": .int64(size), "in_use_by": .array(inUseBy.map { .string($0) })]
        if let sha256 { o["sha256"] = .string(sha256) }
        return .object(o)
    }
}

extension HostInfo: JSONRepresentable {
    public var json: JSONValue {
        .object([
            "hostname": .string(hostname), "version": .string(version),
            "cpu": .object(["model": .string(cpuModel), "count": .int(cpus)]),
            "memory": .object(["total_mib": .int(memoryTotalMiB), "available_mib": .int(memoryAvailableMiB)]),
            "accel": .object(["mode": .string(accel), "reason": .string(accelReason)]),
            "uptime_seconds": .int(uptimeSeconds),
            "load_average": .array(loadAverage.map { .number($0) }),
        ])
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

extension APIError: JSONRepresentable {
    public var json: JSONValue { .object(["error": .string(message)]) }
}

extension ConfigErrors {
    /// As an API error: 400 with every problem, one per line.
    public var apiError: APIError { APIError(400, description) }
}
