import Config
import Platform
import Testing
@testable import Apps

@Suite struct AppSpecTests {
    @Test func parsesEveryKeyAndDefaultsTheRest() throws {
        let s = try AppSpec.parse(try JSONValue.parse(#"{"image": "127.0.0.1:5000/busybox:1", "cmd": ["httpd", "-f"], "env": {"A_1": "x"}, "ports": [{"host": 18080, "guest": 8080}], "memory": 128, "cpus": 2, "restart": "on-failure"}"#))
        #expect(s.name == "busybox")
        #expect(s.cmd == ["httpd", "-f"] && s.env == ["A_1": "x"] && s.ports == [AppPort(host: 18080, guest: 8080)])
        #expect(s.memory == 128 && s.cpus == 2 && s.restart == .onFailure)
        let d = try AppSpec.parse(try JSONValue.parse(#"{"image": "store:web.tar"}"#))
        #expect(d.name == "web" && d.memory == 256 && d.cpus == 1 && d.restart == .no && d.ports.isEmpty)
        #expect(try AppSpec.parse(d.json) == d)
    }

    @Test(arguments: [
        #"{"name": "x"}"#, #"{"image": ""}"#, #"{"image": "a", "name": "Bad_Name"}"#, #"{"image": "a", "extra": 1}"#,
        #"{"image": "a", "ports": [{"host": 0, "guest": 80}]}"#, #"{"image": "a", "ports": [{"host": 80}]}"#,
        #"{"image": "a", "ports": [{"host": 80, "guest": 1}, {"host": 80, "guest": 2}]}"#,
        #"{"image": "a", "env": {"1X": "y"}}"#, #"{"image": "a", "env": {"A": 1}}"#, #"{"image": "a", "memory": 8}"#,
        #"{"image": "a", "cpus": 0}"#, #"{"image": "a", "restart": "sometimes"}"#, #"{"image": "a", "cmd": "sh"}"#,
    ])
    func refusesBadInput(_ text: String) throws {
        #expect(throws: AppError.self) { try AppSpec.parse(try JSONValue.parse(text)) }
    }
}

@Suite struct AppLaunchTests {
    func config(entrypoint: [String] = [], cmd: [String] = [], env: [String] = []) -> ImageConfig {
        var c = try! ImageConfig.parse(Array(#"{"os": "linux", "architecture": "amd64", "config": {}}"#.utf8))
        c.entrypoint = entrypoint; c.cmd = cmd; c.env = env
        return c
    }

    @Test func aCommandReplacesCmdAndKeepsTheEntrypoint() throws {
        let c = config(entrypoint: ["/entry"], cmd: ["serve"])
        #expect(try AppLaunch(config: c, cmd: [], env: [:], hostname: "a").argv == ["/entry", "serve"])
        #expect(try AppLaunch(config: c, cmd: ["debug", "-v"], env: [:], hostname: "a").argv == ["/entry", "debug", "-v"])
    }

    @Test func appVariablesOverrideTheImagesAndPathHasADefault() throws {
        let l = try AppLaunch(config: config(cmd: ["x"], env: ["A=1", "B=2"]), cmd: [], env: ["B": "3", "C": "4"], hostname: "web")
        #expect(l.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=3", "C=4", "HOSTNAME=web"])
        #expect(try AppLaunch.parse(Array(l.json.serialized().utf8)) == l)
    }

    @Test func nothingToRunIsRefused() {
        #expect(throws: AppError.self) { try AppLaunch(config: config(), cmd: [], env: [:], hostname: "a") }
    }
}

@Suite struct MicroVMTests {
    @Test func forwardsPortsAndKeepsTheDisksReadOnly() {
        var s = AppSpec(name: "web", image: "x")
        s.ports = [AppPort(host: 18080, guest: 8080), AppPort(host: 2222, guest: 22)]
        s.memory = 128
        let a = MicroVM.arguments(dir: "/s/apps/run/web", kernel: "/boot/vmlinuz", initrd: "/i.cpio", rootfs: "/r.erofs",
                                  spec: s, accel: "tcg", extraMemory: 100)
        let joined = a.joined(separator: " ")
        #expect(joined.contains("-netdev user,id=net0,hostfwd=tcp::18080-:8080,hostfwd=tcp::2222-:22"))
        #expect(joined.contains("id=root,file=/r.erofs,format=raw,if=none,readonly=on"))
        #expect(joined.contains("-m 228 "))
        #expect(joined.contains("microvm") && joined.contains("-no-reboot") && joined.contains("-daemonize"))
        #expect(joined.contains("path=/s/apps/run/web/ctl.sock,server=on,wait=off"))
    }
}

@Suite struct AppLogTests {
    @Test func theLastExitMarkerIsTheExitCode() throws {
        let path = "/tmp/cb-apps-log-\(UInt32.random(in: 0...UInt32.max))"
        defer { Files.remove(path) }
        try Files.writeAtomically(path, "out\n\(AppInit.exitMarker)3\nmore\n\(AppInit.exitMarker)0\n")
        #expect(AppManager.exitCode(fromLog: path) == 0)
        try Files.writeAtomically(path, "no marker\n")
        #expect(AppManager.exitCode(fromLog: path) == nil)
    }
}
