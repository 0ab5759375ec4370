import Config
import Panel
import Platform

/// Starts the web panel in front of the backend; returns its URL.
func startPanel(_ cfg: CloudBIOSConfig, stateDir: String, webRoot: String?, backend: any PanelBackend) throws -> String? {
    Log.warning("the web panel is not part of this build")
    return nil
}

func stopPanel() {}
