#if canImport(Glibc)
import Glibc
#endif
import Config

/// The apps' routes: `GET · POST /api/v1/apps`, `GET · DELETE
/// /api/v1/apps/{name}`, `GET /api/v1/apps/{name}/logs` (text, from
/// `?offset=` like a VM's serial log), `POST /api/v1/apps/{name}/exec`
/// `{"cmd": […]}` and `POST /api/v1/apps/{name}/stop`.
extension PanelAPI {
    func appsPlan(_ route: Route, _ head: RequestHead) -> Plan {
        let backend = self.backend
        switch route {
        case .listApps:
            return run { .json(.array(await backend.listApps())) }
        case .createApp:
            return jsonBody(head) { body in
                let v: JSONValue
                do throws(ConfigError) { v = try JSONValue.parse(body) } catch { throw RequestError.badRequest(PanelAPI.bodyMessage(error)) }
                guard case .object = v else { throw RequestError.badRequest("body must be a JSON object") }
                return .json(try await backend.createApp(v), status: 201)
            }
        case .getApp(let name):
            return run { .json(try await backend.app(name)) }
        case .deleteApp(let name):
            return run { try await backend.deleteApp(name); return .noContent() }
        case .appStop(let name):
            return .body(limit: 4096) { _ in
                await PanelAPI.guarded { .json(try await backend.stopApp(name)) }
            }
        case .appLogs(let name):
            let offsetText = head.query["offset"]
            return run { try await PanelAPI.serial(path: try await backend.appLogPath(name), offset: offsetText) }
        case .appExec(let name):
            return jsonBody(head) { body in
                let o = try PanelAPI.bodyObject(body, keys: ["cmd"])
                guard let items = o["cmd"]?.arrayValue, !items.isEmpty else {
                    throw RequestError.badRequest(#"body must be {"cmd": [PROGRAM, ARG…]}"#)
                }
                var cmd: [String] = []
                for i in items {
                    guard let s = i.stringValue else { throw RequestError.badRequest("'cmd' must be a list of strings") }
                    cmd.append(s)
                }
                guard !cmd[0].isEmpty else { throw RequestError.badRequest("'cmd' must name a program") }
                return .json(try await backend.execApp(name, cmd))
            }
        default:
            return .respond(.error(404, "not found"))
        }
    }
}

/// A backend without apps (a daemon that does not run them) has none and
/// refuses to start any.
extension PanelBackend {
    public func listApps() async -> [JSONValue] { [] }
    public func app(_ name: String) async throws -> JSONValue { throw RequestError.notFound("no app '\(Names.clip(name))'") }
    public func createApp(_ body: JSONValue) async throws -> JSONValue { throw RequestError.conflict("this daemon does not run apps") }
    public func deleteApp(_ name: String) async throws { throw RequestError.notFound("no app '\(Names.clip(name))'") }
    public func stopApp(_ name: String) async throws -> JSONValue { throw RequestError.notFound("no app '\(Names.clip(name))'") }
    public func appLogPath(_ name: String) async throws -> String { throw RequestError.notFound("no app '\(Names.clip(name))'") }
    public func execApp(_ name: String, _ cmd: [String]) async throws -> JSONValue { throw RequestError.notFound("no app '\(Names.clip(name))'") }
}
