import ArgumentParser
import Init
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// PID 1 of the PE (`/init` runs this). With `--root DIR` it runs the boot
/// off-target against a fake root and prints what it would do.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Run as PID 1 of the CloudBIOS PE (or, with --root, show the boot plan off-target).")

    @Option(help: "Run the boot off-target against this fake root (no mounts, modules or services).")
    var root: String?

    @Flag(help: "Print the boot phases and exit.")
    var phases = false

    @Flag(name: .customLong("kvm-probe"), help: "Check whether KVM runs a test guest; exit 0 when usable.")
    var kvmProbe = false

    /// Arguments the kernel passes on to init.
    @Argument(parsing: .allUnrecognized)
    var kernelArguments: [String] = []

    func run() throws {
        if phases {
            for p in BootSequence.phases { print("\(p.name)\t\(p.hardware ? "hardware" : "logic")\t\(p.summary)") }
            return
        }
        if kvmProbe {
            let p = KVMProbe.probe()
            print("\(p.usable ? "kvm" : "tcg"): \(p.reason)")
            if !p.usable { throw ExitCode(1) }
            return
        }
        if let root {
            let pe = PE(mode: .offTarget(root: root), version: CloudBIOSVersion.string,
                        executable: CommandLine.arguments[0])
            pe.boot()
            print("config: \(pe.configPath ?? "none")")
            if let e = pe.configError { print("config error: \(e)") }
            print("hostname: \(pe.hostname)")
            for s in pe.servicePlan { print("service \(s.name): cloudbios \(s.arguments.joined(separator: " "))") }
            return
        }
        guard getpid() == 1 else {
            throw CLIError("cloudbios init runs as PID 1 of the PE (use --root DIR to try it off-target)")
        }
        PE(mode: .pe, version: CloudBIOSVersion.string).run()
    }
}
