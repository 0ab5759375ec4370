import Testing
import Config
@testable import Panel

/// `POST /api/v1/cluster/join`'s body: what is refused before anything is
/// written, with a message naming the field.
@Suite struct FleetJoinRequestTests {
    func parse(_ json: String) throws -> FleetJoinRequest {
        guard case .object(let o) = try JSONValue.parse(Array(json.utf8)) else { throw RequestError.badRequest("not an object") }
        return try FleetJoinRequest(o)
    }

    func refusal(_ json: String) -> String? {
        do { _ = try parse(json); return nil } catch let e as RequestError {
            #expect(e.kind == .badRequest)
            return e.description
        } catch { return "\(error)" }
    }

    @Test func aWholeRequestIsTakenAsGiven() throws {
        let r = try parse(#"{"member": "10.0.0.11", "fleet": "lab", "token": "0123456789abcdef", "node": "node4", "address": "10.0.0.14"}"#)
        #expect(r == FleetJoinRequest(member: "10.0.0.11", fleet: "lab", token: "0123456789abcdef", node: "node4", address: "10.0.0.14"))
        // empty or null optional fields: the defaults
        let d = try parse(#"{"member": "10.0.0.11", "fleet": "lab", "token": "0123456789abcdef", "node": "", "address": null}"#)
        #expect(d.node == nil && d.address == nil)
    }

    @Test func eachBadFieldIsNamed() {
        #expect(refusal(#"{"fleet": "lab", "token": "0123456789abcdef"}"#)?.contains("'member' is required") == true)
        #expect(refusal(#"{"member": "10.0.0.300", "fleet": "lab", "token": "0123456789abcdef"}"#)?.contains("'member'") == true)
        #expect(refusal(#"{"member": "node1", "fleet": "lab", "token": "0123456789abcdef"}"#)?.contains("'member'") == true)
        #expect(refusal(#"{"member": "10.0.0.11", "fleet": "Lab!", "token": "0123456789abcdef"}"#)?.contains("'fleet'") == true)
        #expect(refusal(#"{"member": "10.0.0.11", "fleet": "lab", "token": "short"}"#)?.contains("'token'") == true)
        #expect(refusal(#"{"member": "10.0.0.11", "fleet": "lab", "token": "0123456789abcdef\n"}"#)?.contains("'token'") == true)
        #expect(refusal(#"{"member": "10.0.0.11", "fleet": "lab", "token": 7}"#)?.contains("'token' must be a string") == true)
        #expect(refusal(#"{"member": "10.0.0.11", "fleet": "lab", "token": "0123456789abcdef", "node": "Node_4"}"#)?.contains("'node'") == true)
        #expect(refusal(#"{"member": "10.0.0.11", "fleet": "lab", "token": "0123456789abcdef", "address": "::1"}"#)?.contains("'address'") == true)
    }
}
