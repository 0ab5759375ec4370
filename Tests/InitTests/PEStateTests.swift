import Testing
@testable import Init
import Config
import Platform

/// What the phases hand on and publish: read after the boot from one owner.
@Suite struct PEStateTests {
    @Test func eachPhasePublishesWhatItProduced() {
        let root = OffTargetBootTests().makeRoot(cmdline: "console=ttyS0 cloudbios.display=none",
                                                 blkid: "/dev/sr0: LABEL=\"CLOUDBIOS\" TYPE=\"iso9660\"\n/dev/vdb: LABEL=\"CBCONFIG\" TYPE=\"vfat\"\n",
                                                 files: ["media/CBCONFIG/cloudbios.yaml": "version: 1\nhostname: box7\npanel:\n  listen: \"0.0.0.0:9443\"\n"])
        defer { Files.removeTree(root) }
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.boot()
        let s = pe.state.snapshot
        #expect(s.cmdline.arguments == ["console=ttyS0", "cloudbios.display=none"])
        #expect(s.volumes.map(\.device) == ["/dev/sr0", "/dev/vdb"])
        #expect(s.config.location == ConfigLocation(path: root + "/media/CBCONFIG/cloudbios.yaml", source: "LABEL=CBCONFIG (/dev/vdb)",
                                                    volume: Volume(device: "/dev/vdb", label: "CBCONFIG", type: "vfat")))
        #expect(s.config.config?.hostname == "box7")
        #expect(s.hostname == "box7")
        // the hardware phases (interfaces, storage) do not run off-target
        #expect(s.interfaces == nil && s.storage == nil)
        #expect(s.displayVM == nil)
        // the status screen reads the same value: the config's panel port
        #expect(pe.statusInfo().panelPort == 9443)
        #expect(pe.statusInfo().configSource == root + "/media/CBCONFIG/cloudbios.yaml (LABEL=CBCONFIG (/dev/vdb))")
    }

    @Test func aDisplayChangeAfterTheBootReplacesTheViewer() throws {
        let root = OffTargetBootTests().makeRoot(cmdline: "", blkid: "/dev/vdb: LABEL=\"CBCONFIG\" TYPE=\"vfat\"\n",
                                                 files: ["media/CBCONFIG/cloudbios.yaml": "version: 1\nvms:\n  - name: a\n    display: true\n"])
        defer { Files.removeTree(root) }
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.boot()
        #expect(pe.servicePlan.last?.arguments == ["viewer", "--vm", "a"])
        try Files.makeDirectories(root + "/run/cloudbios")
        try Files.writeAtomically(root + PE.displayRequestFile, "b\n")
        pe.applyDisplayRequest()
        #expect(pe.displayVM == "b")
        #expect(pe.servicePlan.last?.arguments == ["viewer", "--vm", "b"])
        #expect(pe.statusInfo().display == "b")
        // a name that is not a VM name changes nothing
        try Files.writeAtomically(root + PE.displayRequestFile, "../x\n")
        pe.applyDisplayRequest()
        #expect(pe.displayVM == "b")
        try Files.writeAtomically(root + PE.displayRequestFile, "none\n")
        pe.applyDisplayRequest()
        #expect(pe.servicePlan.map(\.name) == ["daemon", "host-console"])
    }

    @Test func aFailedConfigLeavesNoConfigToLaterPhases() {
        let root = OffTargetBootTests().makeRoot(cmdline: "cloudbios.config=LABEL=NOPE", blkid: "", files: [:])
        defer { Files.removeTree(root) }
        let pe = PE(mode: .offTarget(root: root), version: "test")
        pe.boot()
        #expect(pe.configOutcome == .invalid(nil, errors: "config source LABEL=NOPE not found"))
        #expect(pe.statusInfo().configError == "config source LABEL=NOPE not found")
        #expect(pe.statusInfo().configSource == nil && pe.statusInfo().panelPort == 8443)
        #expect(pe.servicePlan.first?.arguments.contains("--config") == false)
    }
}
