import Testing
@testable import Config

/// The `cluster:` section a join adds to cloudbios.yaml and a leave takes
/// out: read back as the daemon reads it, the rest of the file untouched.
@Suite struct ClusterSectionTests {
    let base = """
        version: 1
        hostname: box
        # the panel
        panel:
          listen: "0.0.0.0:8443"

        """

    @Test func aJoinSectionReadsBackAsTheClusterAsked() throws {
        let section = ClusterConfig.joiningSection(fleet: "lab", member: "10.0.0.11", token: "a \"quoted\" token: 0123456789",
                                                   node: "node4", address: "10.0.0.14")
        let text = ClusterConfig.adding(section, to: base)
        #expect(ClusterConfig.hasSection(text))
        #expect(!ClusterConfig.hasSection(base))
        let cfg = try ConfigLoader.load(path: "c.yaml", text: text)
        #expect(cfg.cluster == ClusterConfig(name: "lab", node: "node4", address: "10.0.0.14", members: ["10.0.0.11"],
                                             token: "a \"quoted\" token: 0123456789"))
        #expect(cfg.hostname == "box" && cfg.panel.port == 8443)
        // without node and address: the defaults
        let plain = try ConfigLoader.load(path: "c.yaml", text: ClusterConfig.adding(
            ClusterConfig.joiningSection(fleet: "lab", member: "10.0.0.11", token: "0123456789abcdef", node: nil, address: nil),
            to: "version: 1"))
        #expect(plain.cluster?.node == nil && plain.cluster?.address == nil && plain.cluster?.members == ["10.0.0.11"])
    }

    @Test func aLeaveTakesOutOnlyTheClusterSection() throws {
        let text = """
            version: 1
            cluster:
              name: lab
              # a comment inside
            # one at the margin, inside too
              members: [10.0.0.11]

              token: "0123456789abcdef"
            # about the VMs
            vms: []
            hostname: box

            """
        let out = ClusterConfig.removingSection(from: text)
        #expect(!ClusterConfig.hasSection(out))
        #expect(out == "version: 1\n# about the VMs\nvms: []\nhostname: box\n")
        let cfg = try ConfigLoader.load(path: "c.yaml", text: out)
        #expect(cfg.cluster == nil && cfg.hostname == "box")
        // a file without one is left as it is
        #expect(ClusterConfig.removingSection(from: base) == base)
    }
}
