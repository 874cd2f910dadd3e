import Foundation
import SegmentCore
import SegmentEngine
import SegmentStore
import TestThreads
import Testing
import WireJSON

/// A database written by the first storage layout (one SQL row per field value and per label)
/// opens with the current one (`field.v2`, `label.v2`: one row per contact) and loses nothing:
/// numbers keep every bit, text keeps quotes and non-ASCII, booleans stay booleans; trigger
/// baselines (`triggers.v2`: bitmap chunks instead of one row per member) keep every member;
/// the event log keeps its events without its time index (`events.v2`); and every provider's
/// tables become its documents (`parts.*`), with funnel, engagement and status exact.
@Suite(.ownThreads) struct StorageMigrationTests {
    @Test func firstLayoutRowsBecomeOneDocumentPerContactExactly() async throws {
        let directory = NSTemporaryDirectory() + "segment-migration-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/v1.sqlite"
        let registry = TestBook.registry()
        let current = PartStorage.sqliteMigrations(for: registry.providers)
        let firstLayout = current.filter { !$0.name.hasSuffix(".v2") && !$0.name.hasSuffix(".v3") && !$0.name.hasPrefix("parts.") }
        #expect(Set(current.map(\.name)).subtracting(firstLayout.map(\.name)) == [
            "field.v2", "label.v2", "triggers.v2", "events.v2", "triggers.v3",
            "parts.v1", "parts.status.v1", "parts.field.v1", "parts.label.v1", "parts.funnel.v1", "parts.engagement.v1",
            "parts.segment.v1",
        ])

        let ltv = 0.1 + 0.2  // 0.30000000000000004: SQLite's own JSON would print 0.3
        let signup = 1_767_225_600.123_456_7
        let store = try Store(path: path, migrations: firstLayout)
        _ = try await store.write({ sql in
            for (name, type) in [("ltv", "number"), ("signup", "date"), ("vip", "boolean"), ("city", "text")] {
                try sql.execute("INSERT INTO field_def(name, type, created_at) VALUES (?, ?, 0)", [.text(name), .text(type)])
            }
            for email in ["ana@example.com", "bo@example.com"] {
                try sql.execute("INSERT INTO contact(email, email_key, created_at) VALUES (?, ?, 0)", [.text(email), .text(email)])
                try sql.execute("INSERT INTO contact_status(contact_id, status) VALUES (?, 0)", [.integer(sql.lastInsertRowID)])
            }
            let rows: [(Int64, String, SQLValue)] = [
                (1, "name", .text("Ana")), (1, "ltv", .real(ltv)), (1, "signup", .real(signup)), (1, "vip", .integer(1)),
                (1, "city", .text("Zoë \"Q\" 東京")), (2, "vip", .integer(0)),
            ]
            for (id, field, value) in rows {
                try sql.execute("INSERT INTO contact_field(contact_id, field, value) VALUES (?, ?, ?)", [.integer(id), .text(field), value])
            }
            try sql.execute("INSERT INTO contact_funnel(contact_id, stage, lost) VALUES (1, 2, 1), (2, NULL, 1)", [])
            try sql.execute("INSERT INTO contact_engagement(contact_id, last_open, last_click, last_send) VALUES (1, ?, NULL, ?)", [.real(signup), .real(signup + 1)])
            for (key, name) in [("vip", "VIP"), ("news", "News")] {
                try sql.execute("INSERT INTO label(key, name, last_added_at) VALUES (?, ?, 0)", [.text(key), .text(name)])
            }
            for (id, key) in [(Int64(1), "vip"), (1, "news"), (2, "vip")] {
                try sql.execute("INSERT INTO contact_label(contact_id, key) VALUES (?, ?)", [.integer(id), .text(key)])
            }
            try sql.execute("""
                INSERT INTO segment(id, name, name_key, filters, review_needed, created_at, updated_at)
                VALUES (1, 'vips', 'vips', '[{"dimension":"label","op":"contains","value":"vip"}]', 0, 0, 0)
                """, [])
            try sql.execute("INSERT INTO trigger(id, segment_id, on_enter, on_exit, created_at) VALUES (1, 1, 1, 1, 0)", [])
            try sql.execute("""
                INSERT INTO event(trigger_id, segment_id, email, type, at, cause)
                VALUES (1, 1, 'ana@example.com', 'enter', 1767225600, 'contacts.upsert')
                """, [])
            for slot in [1, 2, 4_095, 4_096, 70_000] as [Int64] {
                try sql.execute("INSERT INTO trigger_member(trigger_id, contact_id) VALUES (1, ?)", [.integer(slot)])
            }
            return 0
        }, afterCommit: { _ in })
        try store.close()

        let engine = try Engine(configuration: .init(databasePath: path), registry: registry)
        defer { try? engine.close() }
        let ana = try #require(engine.contact(email: "ana@example.com"))
        #expect(ana["name"] == .string("Ana"))
        #expect(ana["fields"]?["ltv"] == .double(ltv))
        #expect(ana["fields"]?["vip"] == .bool(true))
        #expect(ana["fields"]?["city"] == .string("Zoë \"Q\" 東京"))
        #expect(Set(ana["labels"]?.arrayValue ?? []) == [.string("VIP"), .string("News")])
        #expect(engine.contact(email: "bo@example.com")?["fields"]?["vip"] == .bool(false))
        #expect(ana["funnel"] == "customer" && ana["lost"] == true && ana["status"] == "active")
        #expect(engine.contact(email: "bo@example.com")?["funnel"] == .null && engine.contact(email: "bo@example.com")?["lost"] == true)
        #expect(ana["engagement"] == ["last_open_at": .string(ISOTime.format(signup)), "last_click_at": .null, "last_send_at": .string(ISOTime.format(signup + 1))])
        // The old tables are gone; every value lives in a document now.
        #expect(try Store.inspect(path: path) { sql in
            var tables: [String] = []
            try sql.forEachRow("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'contact_%'", []) { tables.append($0[0].string ?? "") }
            return tables
        }.isEmpty)
        // Exact values answer exact filters.
        let exact: JSONValue = [["dimension": "field", "field": "ltv", "op": "equals", "value": .double(ltv)]]
        #expect(try engine.count(filters: exact, audience: .all).matched == 1)
        let after: JSONValue = [["dimension": "field", "field": "signup", "op": "greater_than", "value": "2026-01-01T00:00:00.123Z"]]
        #expect(try engine.count(filters: after, audience: .all).matched == 1)
        let vip: JSONValue = [["dimension": "label", "op": "contains", "value": "vip"]]
        #expect(try engine.count(filters: vip, audience: .all).matched == 2)
        // The trigger's baseline, across chunk boundaries, comes back whole.
        #expect(engine.triggers().first?.members.slots == [1, 2, 4_095, 4_096, 70_000])
        // The event log keeps its events and loses its time index (`events.v2`).
        #expect(try await engine.readEvents(after: 0, limit: 10).events.map(\.email) == ["ana@example.com"])
        let indexes = try storedColumn(at: path, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event'")
        #expect(indexes.isEmpty, "\(indexes)")
    }
}
