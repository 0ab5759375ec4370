import CXXHash

/// XXH3-128 of a file as 32 lowercase hex digits: a checksum that finds a
/// damaged or truncated file at memory speed (several GB/s on one core,
/// five to ten times SHA-256's), for files CloudBIOS wrote itself and reads
/// back (backups). Not a defence against someone who may rewrite the files:
/// downloads from elsewhere keep SHA-256.
public func xxh128File(_ path: String) throws -> String {
    var hex = [CChar](repeating: 0, count: 33)
    let rc = cb_xxh128_file(path, &hex)
    if rc != 0 { throw SystemError("xxh128 \(path)", errno: rc) }
    return String(decoding: hex.prefix(32).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// XXH3-128 of bytes, as `xxh128File` gives it.
public func xxh128(_ bytes: [UInt8]) -> String {
    var hex = [CChar](repeating: 0, count: 33)
    bytes.withUnsafeBytes { cb_xxh128_bytes($0.baseAddress, UInt($0.count), &hex) }
    return String(decoding: hex.prefix(32).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
