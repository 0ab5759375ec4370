import ArgumentParser
import Config
import Platform
#if canImport(Glibc)
import Glibc
#endif

/// `cloudbios upgrade ISO|URL`: the installed system the daemon runs gets
/// the ISO's version in its other system slot (`POST /api/v1/system/upgrade`)
/// and tries it at the next boot; the command follows the task to its end.
struct UpgradeCommand: Command {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Upgrade the installed system from a CloudBIOS ISO (a file or an http(s) URL) into its other slot.",
        discussion: """
        The new kernel, initramfs and payload are written into the system slot that is not running \
        and verified; the next boot tries that slot once. When it does not reach a healthy panel, \
        the boot after it is the old slot again, by itself. The config and the data are not touched. \
        An image that is not a CloudBIOS ISO is refused and nothing changes.
        """)

    @Argument(help: "The CloudBIOS ISO: a file here (uploaded to the daemon) or an http(s) URL the daemon downloads.")
    var source: String

    @Flag(name: .long, help: "Return once the upgrade task is started, without following it.")
    var noWait = false

    @OptionGroup var o: ClientOptions

    mutating func execute() async throws {
        let client = try o.client()
        let r: APIClient.Response
        if source.hasPrefix("http://") || source.hasPrefix("https://") {
            r = try client.request("POST", "/api/v1/system/upgrade", body: JSONValue.object(["url": .string(source)]).bytes)
        } else {
            guard Files.exists(source) else { throw CLIError("upgrade: \(source) does not exist", code: 2) }
            let bytes: [UInt8]
            do { bytes = try Files.read(source) } catch { throw CLIError("upgrade: \(source): \(error)", code: 2) }
            r = try client.request("POST", "/api/v1/system/upgrade", body: bytes, contentType: "application/octet-stream")
        }
        guard r.status == 202, let id = r.json?["id"]?.stringValue else {
            throw CLIError("upgrade: REFUSED: \(SavedLogin.withoutBodyPosition(r.errorMessage))", code: 3)
        }
        if noWait {
            print(o.json ? (r.json?.serialized(pretty: true) ?? r.text) : "upgrade task \(id) started")
            return
        }
        var last = ""
        while true {
            let t = try o.call("GET", "/api/v1/tasks/\(id)")
            let state = t.json?["state"]?.stringValue ?? "?"
            let line = "\(t.json?["progress"]?.intValue ?? 0)% \(t.json?["message"]?.stringValue ?? "")"
            if !o.json, line != last { print(line); last = line }
            if state == "succeeded" || state == "failed" {
                if o.json { print(t.json?.serialized(pretty: true) ?? t.text) }
                if state == "failed" { throw CLIError("upgrade: FAILED: \(t.json?["message"]?.stringValue ?? "?")") }
                return
            }
            usleep(500_000)
        }
    }
}
