import Foundation
import LineRPC
import Testing
import WireJSON

/// What a client notices over the socket: status and funnel values in any case.
@Suite struct RoughEdgesTests {
    @Test func statusAndFunnelValuesAreCaseInsensitive() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let upserted = try await client.call("contacts.upsert", ["contacts": [
            ["email": "ana@example.com", "status": "Active", "funnel": "Loyal_Customer"],
            ["email": "budi@example.com", "status": "UNSUBSCRIBED", "funnel": "customer"],
            ["email": "citra@example.com", "status": "Hard_Bounce"],
        ]])
        #expect(upserted["created"] == 3 && upserted["failed"] == [])
        // Stored and replied in the canonical spelling.
        #expect(server.app.engine.contact(email: "ana@example.com")?["status"] == "active")
        #expect(server.app.engine.contact(email: "ana@example.com")?["funnel"] == "loyal_customer")
        #expect(server.app.engine.contact(email: "citra@example.com")?["status"] == "hard_bounce")

        func matched(_ filter: JSONValue) async throws -> JSONValue? {
            try await client.call("segments.count", ["filters": [filter], "audience": "all"])["matched"]
        }
        #expect(try await matched(["dimension": "status", "op": "equals", "value": "Active"]) == 1)
        #expect(try await matched(["dimension": "status", "op": "in", "value": ["ACTIVE", "Unsubscribed"]]) == 2)
        #expect(try await matched(["dimension": "status", "op": "not_equals", "value": "Active"]) == 2)
        #expect(try await matched(["dimension": "funnel", "op": "equals", "value": "LOYAL_CUSTOMER"]) == 1)
        #expect(try await matched(["dimension": "funnel", "op": "in", "value": ["Customer", "loyal_customer"]]) == 2)

        // A stored segment keeps the filter as written, and lint still recognises it.
        let checked = try await client.call("segments.validate", ["filters": [["dimension": "status", "op": "not_equals", "value": "Unsubscribed"]]])
        #expect(checked["valid"] == true)
        #expect(checked["warnings"]?[0]?["code"] == "suppression_by_segment")

        // Still refused: a value that is no status at all.
        let error = await #expect(throws: RPCError.self) {
            try await client.call("segments.count", ["filters": [["dimension": "status", "op": "equals", "value": "Activ"]]])
        }
        #expect(error?.data?["path"] == "filters[0].value")
        try await client.close()
        try await server.stop()
    }
}
