import Config
import Testing
@testable import Panel

/// `POST /api/v1/disks/{name}/init`: routed only for a disk name /dev has.
@Suite struct DataDiskRouteTests {
    @Test(arguments: ["sdb", "vdb", "nvme0n1", "mmcblk0", "xvdb"])
    func diskNamesRouteToInit(_ name: String) {
        #expect(Router.route(method: "POST", path: "/api/v1/disks/\(name)/init") == .success(.initDisk(name)))
        #expect(Route.initDisk(name).label == "POST /api/v1/disks/{name}/init")
        #expect(!Route.initDisk(name).isPublic)
    }

    @Test func otherMethodsAndPathsAreRefused() {
        guard case .failure(let e) = Router.route(method: "GET", path: "/api/v1/disks/sdb/init") else { Issue.record("GET routed"); return }
        #expect(e.status == 405 && e.allow == ["POST"])
        guard case .failure(let nf) = Router.route(method: "POST", path: "/api/v1/disks/sdb/wipe") else { Issue.record("routed"); return }
        #expect(nf.status == 404)
    }

    @Test(arguments: ["..", "Sdb", "sdb.", "-sdb", "sd b", "1sdb", String(repeating: "a", count: 33)])
    func whatIsNoDiskNameIsA400(_ name: String) {
        guard case .failure(let e) = Router.route(method: "POST", path: "/api/v1/disks/\(name)/init") else {
            Issue.record("'\(name)' routed"); return
        }
        #expect(e.status == 400 && e.message.contains("not a disk name"), "\(e)")
    }
}
