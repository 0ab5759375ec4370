import ArgumentParser
import Platform
import Viewer

/// `cloudbios viewer --vm NAME`: the thin client on the local display.
///
/// Shows the VM's screen (its VNC socket `<state-dir>/run/<name>/vnc.sock`)
/// scaled to the local screen, and gives it every local keyboard and mouse.
/// Ctrl+Alt+F12 switches between the guest and the host console and back.
struct ViewerCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "viewer",
        abstract: "Show a VM on the local screen (Ctrl+Alt+F12: host console).",
        discussion: """
        The guest fills the local display (DRM, else fbdev) keeping its aspect \
        ratio and takes every keyboard and mouse under /dev/input. Ctrl+Alt+F12 \
        switches to the host's status console and back; the guest never sees it. \
        The viewer reconnects by itself when the VM reboots or restarts.
        """)

    @Option(help: "The VM to show.")
    var vm: String?

    @Option(help: "The daemon's state directory.")
    var stateDir: String = "/var/lib/cloudbios"

    @Option(help: "Connect to this VNC socket instead of the VM's (a path, or HOST:PORT).")
    var socket: String?

    @Option(help: "auto, drm[:PATH], fbdev[:PATH] or memory:WxH.")
    var display: String = "auto"

    @Option(help: "Write the local screen as a PPM file after changes (debugging).")
    var dump: String?

    @Option(help: "Also export the local screen over VNC at HOST:PORT (e.g. 127.0.0.1:5900); without --vm, export only the text console.")
    var exportConsole: String?

    @Option(help: ArgumentHelp("Type this once the guest is shown ({enter}, {hotkey} = Ctrl+Alt+F12); for demos and tests.", visibility: .hidden))
    var type: String?

    @Flag(help: ArgumentHelp("Measure the drawing path and print the figures.", visibility: .hidden))
    var benchmark = false

    @Flag(help: "Do not read keyboards and mice.")
    var noInput = false

    @Flag(help: "Do not switch the virtual terminal to graphics mode.")
    var noVt = false

    @Flag(name: .shortAndLong, help: "Log debugging details.")
    var verbose = false

    func validate() throws {
        if vm == nil && socket == nil && exportConsole == nil && !benchmark {
            throw ValidationError("give --vm NAME (or --export-console ADDR)")
        }
        if let vm, !ViewerCommand.validName(vm) {
            throw ValidationError("'\(vm)' is not a VM name ([a-z0-9][a-z0-9-]{0,62})")
        }
        if DisplayChoice(argument: display) == nil {
            throw ValidationError("--display must be auto, drm[:PATH], fbdev[:PATH] or memory:WxH")
        }
    }

    static func runBenchmark() throws {
        func f(_ v: Double) -> String { String((v * 10).rounded() / 10) }
        func f2(_ v: Double) -> String { String((v * 100).rounded() / 100) }
        let figures = ViewerBenchmark.drawing()
        let floor = figures[0]
        for x in figures {
            print("viewer draw: \(x.name): \(f(x.framesPerSecond)) fps, \(f2(x.millisecondsPerFrame)) ms/frame, \(f(floor.framesPerSecond / x.framesPerSecond))x the memcpy floor")
        }
        let p = try ViewerBenchmark.pipeline()
        let one = figures[1]
        print("viewer pipeline: guest change -> local framebuffer, 1920x1080 full-screen, raw RFB over loopback: \(f(p.fps)) fps, latency p50 \(f(p.p50)) ms, p95 \(f(p.p95)) ms, max \(f(p.max)) ms")
        print("RESULT viewer_draw_1920x1080_fps=\(f(one.framesPerSecond)) memcpy_floor_fps=\(f(floor.framesPerSecond))")
        print("RESULT viewer_pipeline_fps=\(f(p.fps)) latency_p50_ms=\(f(p.p50)) latency_p95_ms=\(f(p.p95)) memcpy_floor_ms=\(f2(floor.millisecondsPerFrame))")
    }

    static func validName(_ s: String) -> Bool {
        guard let f = s.utf8.first, s.utf8.count <= 63 else { return false }
        let ok = { (c: UInt8) in (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
        return ok(f) && s.utf8.allSatisfy { ok($0) || $0 == 0x2D }
    }

    mutating func execute() async throws {
        Log.component = "cloudbios-viewer"
        Log.verbose = verbose
        if benchmark {
            try ViewerCommand.runBenchmark()
            return
        }
        // In the PE the display drivers and libvnc* are in the payload: wait
        // for it instead of failing to find a display and being restarted.
        try VNCLibrary.load()
        let path = socket ?? vm.map { "\(stateDir)/run/\($0)/vnc.sock" }
        guard let path else {
            // console export only
            let server = try HostConsoleServer(listen: exportConsole!)
            Log.info("console: exported over VNC on \(exportConsole!)")
            server.runStandalone()
            return
        }
        var options = Viewer.Options(socketPath: path)
        options.display = DisplayChoice(argument: display)!
        options.dumpPath = dump
        options.useInput = !noInput
        options.useTerminal = !noVt
        options.exportConsole = exportConsole
        options.typeText = type
        let viewer: Viewer
        do {
            viewer = try Viewer(options: options)
        } catch {
            throw CLIError("viewer: \(error)")
        }
        viewer.run()
    }
}
