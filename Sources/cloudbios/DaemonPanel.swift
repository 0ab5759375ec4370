import Config
import Fleet
import Panel
import Platform

/// The running panel (one per daemon).
nonisolated(unsafe) private var runningPanel: PanelServer?

/// Starts the web panel and REST API in front of the backend; returns its URL.
func startPanel(_ cfg: CloudBIOSConfig, stateDir: String, webRoot: String?, backend: any PanelBackend,
                users: UserStore? = nil, firstRun: FirstRun.Options? = nil) throws -> String? {
    let server: PanelServer
    do {
        server = try PanelServer(config: cfg.panel, stateDir: stateDir, webRoot: webRoot, backend: backend,
                                 version: CloudBIOSVersion.string, hostname: cfg.hostname,
                                 userStore: users, firstRun: firstRun)
        try server.start()
    } catch {
        throw CLIError("panel on \(cfg.panel.listen): \(error)")
    }
    runningPanel = server
    return server.url
}

/// The API served to the other nodes of the fleet (see `Fleet.apiPort`).
nonisolated(unsafe) private var runningFleetListener: FleetListener?

/// Serves the panel's API to the other nodes on the fleet address.
func startFleetListener(address: String, certPEM: String, keyPEM: String) throws {
    guard let panel = runningPanel else { return }
    stopFleetListener()
    runningFleetListener = try FleetListener(api: panel.api, host: address, port: Fleet.apiPort, certPEM: certPEM, keyPEM: keyPEM)
}

/// Stops serving the node API (this node left its fleet).
func stopFleetListener() {
    runningFleetListener?.stop()
    runningFleetListener = nil
}

func stopPanel() {
    stopFleetListener()
    runningPanel?.stop()
    runningPanel = nil
}
