import ArgumentParser
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check cloudbios.yaml files.",
        subcommands: [Validate.self]
    )

    struct Validate: Command {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file; print FILE:LINE:COL: message for every problem.")

        @Argument(help: "The config file (cloudbios.yaml).")
        var file: String

        @Flag(help: "Print nothing when the file is valid.")
        var quiet = false

        mutating func execute() async throws {
            let text: String
            do {
                text = try Files.readString(file)
            } catch let e as SystemError {
                print("\(file): cannot read: \(e)")
                throw ExitCode(2)
            }
            do {
                let cfg = try ConfigLoader.load(path: file, text: text)
                if !quiet { print(ConfigCommand.summary(file, cfg)) }
            } catch {
                for e in error.errors { print(e.description) }
                let n = error.errors.count
                printErr("\(file): \(n) problem\(n == 1 ? "" : "s")")
                throw ExitCode(1)
            }
        }
    }

    static func summary(_ file: String, _ cfg: CloudBIOSConfig) -> String {
        var parts = ["\(cfg.vms.count) VM\(cfg.vms.count == 1 ? "" : "s")", "\(cfg.images.count) image\(cfg.images.count == 1 ? "" : "s")",
                     "\(cfg.panel.users.count) panel user\(cfg.panel.users.count == 1 ? "" : "s")"]
        if let d = cfg.displayVM { parts.append("display: \(d.name)") }
        if let i = cfg.install {
            var sel: [String] = []
            if let v = i.disk.path { sel.append("path=\(v)") }
            if let v = i.disk.byID { sel.append("by_id=\(v)") }
            if let v = i.disk.serial { sel.append("serial=\(v)") }
            if let v = i.disk.model { sel.append("model=\(v)") }
            if let v = i.disk.size { sel.append("size \(v)") }
            if let v = i.disk.ssd { sel.append("ssd=\(v)") }
            parts.append("install to disk {\(sel.joined(separator: ", "))}\(i.wipe ? " with wipe" : ""), then \(i.after.rawValue)")
        }
        var s = "\(file): ok (\(parts.joined(separator: "; ")))"
        if cfg.panel.users.isEmpty { s += "\n\(file): warning: no panel users: nobody can log in to the panel" }
        return s
    }
}

func printErr(_ s: String) {
    fflush(nil)
    let line = s + "\n"
    _ = line.utf8CString.withUnsafeBufferPointer { p in writeStderr(p.baseAddress!, p.count - 1) }
}
