import Testing
@testable import Init
import Config
import Platform

/// The config phase's logic against fake volumes, downloads and files: one
/// outcome, the file parsed once.
@Suite struct ConfigPhaseTests {
    /// A phase whose outside world is a dictionary of files; counts reads.
    final class World {
        var files: [String: String] = [:]
        var mounted: [String: String] = [:]  // device -> dir
        var fetched: [String: String?] = [:]  // url -> error
        var reads: [String] = []
        var lines: [String] = []

        func phase() -> ConfigPhase {
            var p = ConfigPhase(downloadPath: "/run/cloudbios/config/cloudbios.yaml",
                                mount: { self.mounted[$0.device] },
                                fetch: { url, dest in
                                    let e = self.fetched[url] ?? "no such server"
                                    if e == nil { self.files[dest] = "version: 1\nhostname: fetched\n" }
                                    return e
                                },
                                metadata: { _ in (error: "no cloud", found: nil) })
            p.exists = { self.files[$0] != nil }
            p.read = { path in
                self.reads.append(path)
                do { return .success(try ConfigLoader.load(path: path, text: self.files[path] ?? "")) }
                catch { return .failure(ConfigReadError("\(error)")) }
            }
            p.log = { self.lines.append($0) }
            return p
        }
    }

    let stick = Volume(device: "/dev/vdb", label: "CBCONFIG", type: "vfat")
    let medium = Volume(device: "/dev/sr0", label: "CLOUDBIOS", type: "iso9660")

    @Test func nothingFoundIsNoneWithoutAnError() {
        let w = World()
        let out = w.phase().run(ConfigDiscovery.plan(KernelCommandLine(""), volumes: [medium]), explicit: false)
        #expect(out == .none)
        #expect(out.error == nil && out.location == nil && out.validPath == nil)
        #expect(w.reads.isEmpty)
    }

    @Test func theFirstVolumeWithAFileWinsAndIsParsedOnce() throws {
        let w = World()
        w.mounted = ["/dev/vdb": "/media/stick", "/dev/sr0": "/media/cd"]
        w.files["/media/cd/cloudbios.yaml"] = "version: 1\nhostname: from-cd\n"
        let out = w.phase().run(ConfigDiscovery.plan(KernelCommandLine(""), volumes: [medium, stick]), explicit: false)
        // the stick is tried first and has no file: no error, the CD's is used
        guard case .valid(let at, let cfg) = out else { Issue.record("\(out)"); return }
        #expect(at == ConfigLocation(path: "/media/cd/cloudbios.yaml", source: "LABEL=CLOUDBIOS (/dev/sr0)", volume: medium))
        #expect(cfg.hostname == "from-cd")
        #expect(out.validPath == "/media/cd/cloudbios.yaml" && out.error == nil)
        #expect(w.reads == ["/media/cd/cloudbios.yaml"])
    }

    @Test func anInvalidFileKeepsWhereItIsAndEveryError() {
        let w = World()
        w.mounted = ["/dev/vdb": "/media/stick"]
        w.files["/media/stick/cloudbios.yaml"] = "version: 1\nhostname: x\npanel:\n  memroy: 12\n"
        let out = w.phase().run(ConfigDiscovery.plan(KernelCommandLine(""), volumes: [stick]), explicit: false)
        guard case .invalid(let at, let errors) = out else { Issue.record("\(out)"); return }
        // the volume is still known (the machine's users live beside the file)
        #expect(at?.volume == stick)
        #expect(errors.contains("/media/stick/cloudbios.yaml:4:3:"), "\(errors)")
        #expect(out.config == nil && out.validPath == nil)
        #expect(w.reads.count == 1)
        #expect(w.lines.contains("config: the config is invalid; the daemon starts with defaults"))
    }

    @Test func aNamedSourceThatFailsIsInvalidWithoutALocation() {
        let w = World()
        for (cmdline, error) in [
            ("cloudbios.config=LABEL=NOPE", "config source LABEL=NOPE not found"),
            ("cloudbios.config=/etc/x.yaml", "/etc/x.yaml: no such file"),
            ("cloudbios.config=http://h/c.yaml", "cannot download the config from http://h/c.yaml: no such server"),
            ("cloudbios.config=metadata", "cannot read the config from the cloud's user-data: no cloud"),
        ] {
            let c = KernelCommandLine(cmdline)
            let out = w.phase().run(ConfigDiscovery.plan(c, volumes: [stick]), explicit: c.configSource != nil)
            #expect(out == .invalid(nil, errors: error))
        }
        // a named volume without the file
        w.mounted = ["/dev/vdb": "/media/stick"]
        let out = w.phase().run(ConfigDiscovery.plan(KernelCommandLine("cloudbios.config=LABEL=CBCONFIG"), volumes: [stick]), explicit: true)
        #expect(out == .invalid(nil, errors: "LABEL=CBCONFIG: no cloudbios.yaml at the root of /dev/vdb"))
        #expect(w.reads.isEmpty)
    }

    @Test func aDownloadedConfigIsReadFromWhereItWasWritten() {
        let w = World()
        w.fetched.updateValue(nil, forKey: "https://h/c.yaml")
        let out = w.phase().run([.fetch(url: "https://h/c.yaml")], explicit: true)
        #expect(out.location == ConfigLocation(path: "/run/cloudbios/config/cloudbios.yaml", source: "https://h/c.yaml"))
        #expect(out.config?.hostname == "fetched")
    }

    @Test func anAbsolutePathIsReadBelowTheRoot() {
        let w = World()
        w.files["/r/etc/x.yaml"] = "version: 1\n"
        let out = w.phase().run([.file(path: "/etc/x.yaml")], explicit: true, root: "/r")
        #expect(out.location == ConfigLocation(path: "/r/etc/x.yaml", source: "/etc/x.yaml"))
        #expect(out.config != nil)
    }
}
