import Foundation
import LineRPC
import SegmentCore
import TestThreads
import Testing
import WireJSON

/// Segment hygiene over the socket (issue 6): usage recorded by a send count, a resolve, an
/// export and a trigger and shown as last_used_at; lint on create, update, validate and on
/// demand; review_needed cleared only by an explicit update; explain by id and by filters.
@Suite(.ownThreads) struct LintExplainTestsOverSocket {
    static func seed(_ client: RPCClient) async throws {
        _ = try await client.call("fields.define", ["name": "city", "type": "text"])
        _ = try await client.call("contacts.upsert", ["contacts": [
            ["email": "ana@example.com", "labels": ["newsletter", "vip"], "fields": ["city": "Jakarta"]],
            ["email": "budi@example.com", "labels": ["newsletter"], "fields": ["city": "Bandung"]],
            ["email": "citra@example.com", "status": "unsubscribed", "labels": ["newsletter"], "fields": ["city": "jakarta"]],
        ]])
    }

    static let readers: JSONValue = [["dimension": "status", "op": "equals", "value": "active"], ["dimension": "label", "op": "contains", "value": "newsletter"]]

    @Test func lastUsedAtFollowsSendCountsResolvesExportsAndTriggers() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        try await Self.seed(client)
        let created = try await client.call("segments.create", ["name": "Active newsletter readers", "filters": Self.readers])
        let id = try #require(created["id"])
        #expect(created["last_used_at"] == .null)
        #expect(created["warnings"] == [])

        // Counting for the whole book, counting ad-hoc filters, explaining and linting are not uses.
        _ = try await client.call("segments.count", ["id": id, "audience": "all"])
        _ = try await client.call("segments.count", ["filters": Self.readers])
        _ = try await client.call("segments.explain", ["id": id, "email": "ana@example.com"])
        _ = try await client.call("segments.lint", ["id": id])
        #expect(try await client.call("segments.get", ["id": id])["last_used_at"] == .null)

        // A send count is.
        let count = try await client.call("segments.count", ["id": id])
        #expect(count["sendable"] == 2 && count["matched"] == 2)
        #expect(try await client.call("segments.get", ["id": id])["last_used_at"] == "2026-01-15T12:00:00Z")

        // A resolve, two hours later.
        server.clock.advance(seconds: 2 * 3600)
        let rows = Collected()
        let resolved = try await client.call("segments.resolve", ["id": id, "columns": ["email"]]) { _, params in rows.add(params) }
        #expect(resolved["rows"] == 2)
        #expect(try await client.call("segments.get", ["id": id])["last_used_at"] == "2026-01-15T14:00:00Z")
        #expect(try await client.call("segments.list")["segments"]?[0]?["last_used_at"] == "2026-01-15T14:00:00Z")

        // An export, two hours later.
        server.clock.advance(seconds: 2 * 3600)
        _ = try await client.call("segments.export", ["id": id, "path": "readers.ndjson"]) { _, _ in }
        #expect(try await client.call("segments.get", ["id": id])["last_used_at"] == "2026-01-15T16:00:00Z")

        // A trigger, 100 days later: not unused after that.
        server.clock.advance(days: 100)
        let stale = try await client.call("segments.lint", ["id": id])
        #expect(stale["segments"]?[0]?["warnings"]?.arrayValue?.compactMap { $0["code"]?.stringValue }.contains("unused") == true)
        _ = try await client.call("triggers.create", ["segment": id])
        #expect(try await client.call("segments.get", ["id": id])["last_used_at"] == "2026-04-25T16:00:00Z")
        let fresh = try await client.call("segments.lint", ["id": id])
        #expect(fresh["segments"]?[0]?["warnings"]?.arrayValue?.compactMap { $0["code"]?.stringValue }.contains("unused") == false)
        try await server.stop()
    }

    @Test func lintOnCreateUpdateValidateAndOnDemand() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        try await Self.seed(client)
        let broad = try await client.call("segments.create", ["name": "Segment 7", "filters": [["dimension": "status", "op": "equals", "value": "active"]]])
        #expect(broad["warnings"]?.arrayValue?.map { $0["code"] } == ["overly_broad", "generic_name"])
        let id = try #require(broad["id"])
        let updated = try await client.call("segments.update", ["id": id, "name": "Jakarta readers", "filters": [
            ["dimension": "field", "field": "city", "op": "equals", "value": "jakarta"],
            ["dimension": "status", "op": "not_equals", "value": "hard_bounce"],
            ["dimension": "label", "op": "contains", "value": "campaign-q1"]]])
        #expect(updated["warnings"]?.arrayValue?.map { $0["code"] } == ["suppression_by_segment", "stale_label"])
        #expect(updated["warnings"]?.arrayValue?.map { $0["path"] } == ["filters[1]", "filters[2].value"])
        #expect(updated["rebaselined_triggers"] == [])
        let validated = try await client.call("segments.validate", ["filters": [["dimension": "label", "op": "contains", "value": "VIP"]]])
        #expect(validated["valid"] == true && validated["warnings"] == [])
        let invalid = try await client.call("segments.validate", ["filters": [["dimension": "label", "op": "sounds_like", "value": "vip"]]])
        #expect(invalid["valid"] == false && invalid["warnings"] == [])

        let good = try await client.call("segments.create", ["name": "Active newsletter readers", "filters": Self.readers])
        let all = try await client.call("segments.lint")
        #expect(all["segments"]?.arrayValue?.map { $0["id"] } == [id, good["id"]!])
        #expect(all["segments"]?[1]?["warnings"] == [])
        #expect(all["segments"]?[0]?["warnings"]?.arrayValue?.count == 2)
        let missing = await #expect(throws: RPCError.self) { try await client.call("segments.lint", ["id": 99]) }
        #expect(missing?.code == -32001)
        try await server.stop()
    }

    @Test func reviewNeededIsClearedOnlyByAnExplicitUpdate() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        try await Self.seed(client)
        let grouped: JSONValue = [["any": [["dimension": "label", "op": "contains", "value": "vip"],
                                           ["dimension": "field", "field": "city", "op": "equals", "value": "bandung"]]]]
        let created = try await client.call("segments.create", ["name": "VIPs or Bandung", "filters": grouped])
        let id = try #require(created["id"])
        #expect(created["review_needed"] == true)
        #expect(try await client.call("segments.update", ["id": id, "name": "VIPs or Bandung readers"])["review_needed"] == true)
        #expect(try await client.call("segments.update", ["id": id, "description": "spring"])["review_needed"] == true)
        #expect(try await client.call("segments.get", ["id": id])["review_needed"] == true)
        #expect(try await client.call("segments.list")["segments"]?[0]?["review_needed"] == true)
        let signed = try await client.call("segments.update", ["id": id, "review_needed": false])
        #expect(signed["review_needed"] == false)
        #expect(try await client.call("segments.update", ["id": id, "description": "signed off"])["review_needed"] == false)
        #expect(try await client.call("segments.get", ["id": id])["review_needed"] == false)
        #expect(try await client.call("segments.update", ["id": id, "filters": grouped])["review_needed"] == true)
        try await server.stop()
    }

    @Test func explainByIdAndByFilters() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        try await Self.seed(client)
        let created = try await client.call("segments.create", ["name": "Active newsletter readers", "filters": Self.readers])
        let citra = try await client.call("segments.explain", ["id": created["id"]!, "email": "citra@example.com"])
        #expect(citra["matches"] == false && citra["in_send_audience"] == false && citra["sendable"] == false)
        #expect(citra["filters"]?.arrayValue?.map { $0["matches"] } == [false, true])
        #expect(citra["not_sendable_because"] == ["status is unsubscribed, not active"])
        let byFilters = try await client.call("segments.explain", ["filters": [["dimension": "label", "op": "contains", "value": "vip"]], "email": "ANA@example.com"])
        #expect(byFilters["matches"] == true && byFilters["in_send_audience"] == true && byFilters["email"] == "ana@example.com")
        let unknown = await #expect(throws: RPCError.self) { try await client.call("segments.explain", ["id": created["id"]!, "email": "nobody@example.com"]) }
        #expect(unknown?.code == -32001)
        let both = await #expect(throws: RPCError.self) { try await client.call("segments.explain", ["id": 1, "filters": [], "email": "ana@example.com"]) }
        #expect(both?.code == -32602)
        try await server.stop()
    }
}
