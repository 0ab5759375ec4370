#if canImport(Glibc)
import Glibc
#endif
import Platform

extension VMManager {
    /// After the state directory moved onto another filesystem (a data disk
    /// made while the state was in RAM): the NAT's DHCP server, which keeps
    /// its lease file open in the old one, starts again on the new one, with
    /// the leases copied there.
    public func restartNATDHCP() async {
        let dir = "\(stateDir)/nat"
        guard let t = Files.readTrimmed("\(dir)/dhcp.pid"), let pid = Int32(t), processAlive(pid) else { return }
        kill(pid, SIGTERM)
        for _ in 0..<50 where processAlive(pid) { try? await Task.sleep(nanoseconds: 20_000_000) }
        do {
            try await NATNetwork.setUp(dir: dir)
            Log.info("nat: the DHCP server keeps its leases in \(dir) again")
        } catch {
            Log.warning("nat: the DHCP server did not start again in \(dir): \(error)")
        }
    }
}
