import Foundation
import LineRPC
import SegmentdApp
import Testing
import TestThreads
import WireJSON

/// Every product method over a real Unix socket, checking the answers a caller relies on.
@Suite(.ownThreads) struct EveryMethodTests {
    @Test func contactBookSegmentsAndSuppressionOverTheSocket() async throws {
        let server = try await TestServer.start()
        let c = try await server.client()

        let field = try await c.call("fields.define", ["name": "city", "type": "text"])
        #expect(field == ["name": "city", "type": "text", "system": false, "version": 1])
        _ = try await c.call("fields.define", ["name": "spend", "type": "number"])
        let fields = try await c.call("fields.list")
        #expect(fields.arrayValue?.compactMap { $0["name"]?.stringValue } == ["email", "name", "created_at", "city", "spend"])

        let upsert = try await c.call("contacts.upsert", ["contacts": [
            ["email": "Ana@Example.com", "name": "Ana", "labels": ["VIP", "newsletter"], "funnel": "customer", "fields": ["city": "Jakarta", "spend": 120]],
            ["email": "budi@example.com", "status": "unsubscribed", "labels": ["newsletter"]],
            ["email": "bad", "labels": ["x"]],
            ["email": "citra@example.com", "fields": ["spend": "lots"]],
        ]])
        #expect(upsert["created"] == 2)
        #expect(upsert["failed"]?.arrayValue?.map { $0["index"] } == [2, 3])
        #expect(upsert["failed"]?[1]?["error"]?.stringValue?.contains("contacts[3].fields.spend") == true)

        let again = try await c.call("contacts.upsert", ["contacts": [["email": "ana@example.com", "add_labels": ["gold"]]]])
        #expect(again["updated"] == 1 && again["created"] == 0)

        let ana = try await c.call("contacts.get", ["email": "ANA@example.com"])
        #expect(ana["email"] == "Ana@Example.com")
        #expect(ana["labels"] == ["gold", "newsletter", "VIP"])
        #expect(ana["funnel"] == "customer" && ana["status"] == "active" && ana["fields"]?["spend"] == 120)

        let count = try await c.call("contacts.count")
        #expect(count["total"] == 2)
        #expect(count["by_status"] == ["active": 1, "unsubscribed": 1])

        _ = try await c.call("engagement.record", ["events": [["email": "ana@example.com", "type": "open", "at": "2026-01-10T08:00:00Z"]]])
        let older = try await c.call("engagement.record", ["events": [
            ["email": "ana@example.com", "type": "open", "at": "2025-01-10T08:00:00Z"],
            ["email": "nobody@example.com", "type": "open", "at": "2025-01-10T08:00:00Z"],
        ]])
        #expect(older["recorded"] == 0 && older["unchanged"] == 1 && older["failed"]?.arrayValue?.count == 1)
        #expect(try await c.call("contacts.get", ["email": "ana@example.com"])["engagement"]?["last_open_at"] == "2026-01-10T08:00:00Z")

        let labels = try await c.call("labels.list")
        #expect(labels.arrayValue?.map { $0["name"] } == ["gold", "newsletter", "VIP"])
        #expect(labels.arrayValue?.first { $0["name"] == "newsletter" }?["contacts"] == 2)

        let newsletter: JSONValue = [["dimension": "label", "op": "contains", "value": "newsletter"]]
        let segment = try await c.call("segments.create", ["name": "Newsletter", "filters": newsletter])
        let id = try #require(segment["id"]?.intValue)
        #expect(segment["review_needed"] == false && segment["warnings"] == [])
        let counted = try await c.call("segments.count", ["id": .int(id)])
        #expect(counted["matched"] == 2 && counted["sendable"] == 1 && counted["excluded"]?["unsubscribed"] == 1)
        #expect(counted["as_of"] == "2026-01-15T12:00:00Z")

        await #expect(throws: RPCError.self) { _ = try await c.call("segments.create", ["name": "newsletter", "filters": []]) }
        do {
            _ = try await c.call("segments.create", ["name": "NEWSLETTER", "filters": []])
        } catch let e as RPCError {
            #expect(e.code == -32002 && e.type == "conflict")
        }

        let updated = try await c.call("segments.update", ["id": .int(id), "filters": [["any": newsletter]]])
        #expect(updated["review_needed"] == true)
        let cleared = try await c.call("segments.update", ["id": .int(id), "review_needed": false])
        #expect(cleared["review_needed"] == false)
        #expect(try await c.call("segments.get", ["id": .int(id)])["name"] == "Newsletter")
        #expect(try await c.call("segments.list")["segments"]?.arrayValue?.count == 1)

        let validation = try await c.call("segments.validate", ["filters": [
            ["dimension": "status", "op": "equals", "value": "active"],
            ["dimension": "planet", "op": "equals", "value": "mars"],
            ["dimension": "field", "field": "spend", "op": "between", "value": [10, 1]],
        ]])
        #expect(validation["valid"] == false)
        #expect(validation["errors"]?.arrayValue?.map { $0["path"] } == ["filters[1].dimension", "filters[2].value"])

        #expect(try await c.call("suppression.add", ["emails": ["ana@example.com", "zed@example.com"], "reason": "complaint"])["added"] == 2)
        #expect(try await c.call("segments.count", ["id": .int(id)])["sendable"] == 0)
        let check = try await c.call("suppression.check", ["email": "ZED@example.com"])
        #expect(check["suppressed"] == true && check["reason"] == "complaint")
        let page = try await c.call("suppression.list", ["limit": 1])
        #expect(page["items"]?.arrayValue?.count == 1 && page["next"] == "ana@example.com")
        #expect(try await c.call("suppression.list", ["after": "ana@example.com"])["items"]?[0]?["email"] == "zed@example.com")
        #expect(try await c.call("suppression.remove", ["emails": ["ana@example.com"]])["removed"] == 1)
        #expect(try await c.call("segments.count", ["id": .int(id)])["sendable"] == 1)

        #expect(try await c.call("segments.delete", ["id": .int(id)])["deleted"] == .int(id))
        #expect(try await c.call("contacts.delete", ["emails": ["budi@example.com", "nobody@example.com"]])["deleted"] == 1)

        let stats = try await c.call("server.stats")
        #expect(stats["contacts"] == 1 && stats["segments"] == 0)
        #expect((stats["resident_bytes"]?.intValue ?? 0) > 0)

        try await c.close()
        try await server.stop()
    }

    @Test func badParamsNameTheJSONPath() async throws {
        let server = try await TestServer.start()
        let c = try await server.client()
        let cases: [(String, JSONValue, Int, String)] = [
            ("contacts.get", [:], -32602, "email"),
            ("contacts.get", ["email": 3], -32602, "email"),
            ("contacts.upsert", ["contacts": "nope"], -32602, "contacts"),
            ("contacts.upsert", ["contacts": [], "atomics": true], -32602, "atomics"),
            ("segments.count", ["filters": [["dimension": "label", "op": "contains_any", "value": []]]], -32602, "filters[0].value"),
            ("segments.count", ["filters": [["any": []]]], -32602, "filters[0].any"),
            ("segments.count", ["id": 1, "filters": []], -32602, "filters"),
            ("segments.count", ["filters": [], "audience": "everyone"], -32602, "audience"),
            ("segments.get", ["id": 99], -32001, ""),
            ("contacts.get", ["email": "ghost@example.com"], -32001, ""),
        ]
        for (method, params, code, path) in cases {
            do {
                _ = try await c.call(method, params)
                Issue.record("\(method) \(params.serialized()) should fail")
            } catch let e as RPCError {
                #expect(e.code == code, "\(method) \(params.serialized())")
                if !path.isEmpty { #expect(e.data?["path"]?.stringValue == path, "\(method) \(params.serialized())") }
            }
        }
        // The connection is still usable after every error.
        #expect(try await c.call("rpc.ping")["pong"] == true)
        try await c.close()
        try await server.stop()
    }

    @Test func tcpNeedsTheTokenAndWorksWithIt() async throws {
        let server = try await TestServer.start { config in
            config.tcp = "127.0.0.1:0"
            config.token = "s3cret-token"
        }
        let port = try #require(server.app.server.tcpPort)
        let stranger = try await RPCClient.connect(host: "127.0.0.1", port: port)
        do {
            _ = try await stranger.call("contacts.count")
            Issue.record("a call before hello must be refused on TCP")
        } catch let e as RPCError {
            #expect(e.code == -32005)
        }
        await #expect(throws: RPCError.self) { _ = try await stranger.call("rpc.hello", ["token": "wrong"]) }
        try? await stranger.close()

        let friend = try await RPCClient.connect(host: "127.0.0.1", port: port)
        let hello = try await friend.call("rpc.hello", ["token": "s3cret-token"])
        #expect(hello["dimensions"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["status", "field", "label", "funnel", "engagement", "segment"])
        #expect(try await friend.call("contacts.count")["total"] == 0)
        try await friend.close()
        try await server.stop()
    }
}
