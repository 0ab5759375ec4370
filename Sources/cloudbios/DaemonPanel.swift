import Config
import Panel
import Platform

/// The running panel (one per daemon).
nonisolated(unsafe) private var runningPanel: PanelServer?

/// Starts the web panel in front of the backend; returns its URL.
func startPanel(_ cfg: CloudBIOSConfig, stateDir: String, webRoot: String?, backend: any PanelBackend) throws -> String? {
    let server = try PanelServer(config: cfg.panel, stateDir: stateDir, webRoot: webRoot, backend: backend,
                                 version: CloudBIOSVersion.string, hostname: cfg.hostname)
    try server.start()
    runningPanel = server
    return server.url
}

func stopPanel() {
    runningPanel?.stop()
    runningPanel = nil
}
