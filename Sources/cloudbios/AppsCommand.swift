import ArgumentParser
import Apps
import Config

/// Apps: container images run as microVMs.
struct AppsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apps",
        abstract: "Container images for apps: pull them into the state dir's cache.",
        subcommands: [AppsPull.self])
}

/// Pulls an image into the state dir's cache (layers checked against their
/// digests, shared between images) and builds its read-only root filesystem.
struct AppsPull: Command {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pull an image (REGISTRY/REPO:TAG, @sha256:…, or store:NAME for an OCI or docker archive in the image store) and build its root filesystem.")

    @Argument(help: "The image: [REGISTRY/]REPO[:TAG][@sha256:HEX] (loopback registries over HTTP), or store:NAME.")
    var image: String

    @Option(name: .customLong("state-dir"), help: "Where the cache is (STATE/apps).")
    var stateDir: String = "/var/lib/cloudbios"

    @Option(name: .customLong("insecure-registry"), help: "A registry (HOST[:PORT]) to reach over plain HTTP; repeatable.")
    var insecureRegistries: [String] = []

    @Flag(help: "Print JSON.") var json = false

    mutating func execute() async throws {
        let puller = ImagePuller(cache: ImageCache(stateDir: stateDir), insecure: Set(insecureRegistries))
        let quiet = json
        let pulled: PulledImage
        do {
            pulled = try puller.pull(image) { step in if !quiet { print("pulling \(step)") } }
        } catch {
            throw CLIError("\(error)")
        }
        if json {
            print(JSONValue.object([
                "image": .string(pulled.reference), "digest": .string(pulled.digest),
                "rootfs": .string(pulled.rootfs), "layers_downloaded": .int(pulled.downloaded),
                "config": pulled.config.json,
            ]).serialized(pretty: true))
        } else {
            print("\(pulled.reference): \(pulled.digest)")
            print("root filesystem: \(pulled.rootfs)")
        }
    }
}
