import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import Testing
import TestThreads
import WireJSON

/// What a client notices over the socket: status and funnel values in any case, an explain
/// reply that says plainly whether the contact is in the send audience, and `version` moving
/// only when the Contact Book or a definition changes.
@Suite(.ownThreads) struct RoughEdgesTests {
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

    @Test func explainSaysPlainlyWhetherTheContactIsInTheSendAudience() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        _ = try await client.call("contacts.upsert", ["contacts": [
            ["email": "ana@example.com", "labels": ["vip"]],
            ["email": "budi@example.com"],
            ["email": "citra@example.com", "status": "unsubscribed", "labels": ["vip"]],
            ["email": "dewi@example.com", "status": "unsubscribed"],
        ]])
        let filters: JSONValue = [["dimension": "label", "op": "contains", "value": "vip"]]
        func explain(_ email: String) async throws -> JSONValue {
            try await client.call("segments.explain", ["filters": filters, "email": .string(email)])
        }
        let ana = try await explain("ana@example.com")
        #expect(ana["in_send_audience"] == true)
        #expect(ana["summary"] == "in the send audience: matches the rule and the contact is sendable")
        let budi = try await explain("budi@example.com")
        #expect(budi["in_send_audience"] == false && budi["sendable"] == true)
        #expect(budi["summary"] == "not in the send audience: filters[0] did not match (the contact itself is sendable: status active, not suppressed)")
        let citra = try await explain("citra@example.com")
        #expect(citra["summary"] == "not in the send audience: matches the rule, but the contact is not sendable: status is unsubscribed, not active")
        let dewi = try await explain("dewi@example.com")
        #expect(dewi["summary"] == "not in the send audience: filters[0] did not match, and the contact is not sendable: status is unsubscribed, not active")
        try await client.close()
        try await server.stop()
    }

    @Test func countingDoesNotChangeTheVersionButWritesDo() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "ana@example.com", "labels": ["vip"]]]])
        let created = try await client.call("segments.create", ["name": "VIP", "filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
        let id = try #require(created["id"])
        let before = try #require(try await client.call("segments.count", ["id": id])["version"])
        // The first count for a send records last_used_at; it must not look like a change.
        #expect(try await client.call("segments.get", ["id": id])["last_used_at"] != .null, "the count recorded its use")
        server.clock.advance(seconds: 7_200)  // past the hourly granularity: the next use writes again
        #expect(try await client.call("segments.count", ["id": id])["version"] == before)
        _ = try await client.call("segments.resolve", ["id": id]) { _, _ in }
        #expect(try await client.call("segments.count", ["id": id])["version"] == before)
        #expect(server.app.engine.snapshot.version == before.intValue)

        // A real change does move it: a contact, then a definition.
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "budi@example.com"]]])
        let afterContact = try #require(try await client.call("segments.count", ["id": id])["version"]?.intValue)
        #expect(afterContact == (before.intValue ?? 0) + 1)
        _ = try await client.call("segments.update", ["id": id, "name": "VIP readers"])
        #expect(try await client.call("segments.count", ["id": id])["version"]?.intValue == afterContact + 1)
        try await client.close()
        try await server.stop()
    }

    /// README and proto-docs stand alone: every relative link leads to a file of the
    /// repository, and no text sends the reader to documents that are not in it.
    @Test func docsAreSelfContained() throws {
        var documents = ["README.md"]
        let docs = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("proto-docs").path)
        documents += docs.filter { $0.hasSuffix(".md") }.map { "proto-docs/" + $0 }
        #expect(documents.count >= 7)
        let link = try Regex(#"\]\(([^)#\s]+)(#[^)]*)?\)"#)
        for document in documents {
            let url = packageRoot.appendingPathComponent(document)
            let text = try String(contentsOf: url, encoding: .utf8)
            for missing in ["ARCHITECTURE.md", "API.md", "../shared", "shared/"] {
                #expect(!text.contains(missing), "\(document) mentions \(missing), which is not in the repository")
            }
            for match in text.matches(of: link) {
                let target = String(match.output[1].substring ?? "")
                if target.hasPrefix("http://") || target.hasPrefix("https://") { continue }
                let path = url.deletingLastPathComponent().appendingPathComponent(target).path
                #expect(FileManager.default.fileExists(atPath: path), "\(document) links to \(target), which does not exist")
            }
        }
    }
}
