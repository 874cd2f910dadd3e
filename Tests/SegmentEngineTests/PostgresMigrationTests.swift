import Foundation
import PostgresStore
import SegmentCore
import SegmentEngine
import SegmentStore
import TestPostgres
import TestThreads
import Testing
import WireJSON

/// A book moved from its SQLite file into PostgreSQL (`segmentd migrate`) is the same book:
/// same contacts in the same slots, same answers, same events and cursors, same trigger
/// baselines, and the keys it hands out next are those SQLite would have handed out.
@Suite(.ownThreads) struct PostgresMigrationTests {
    /// The oracle book (3,000 contacts, two triggered segments, a pruned event log, a deleted
    /// newest contact, segment and trigger) copied from a backup of the live file into a
    /// fresh PostgreSQL book: a fleet node on it answers 100 rules as the oracle does, shows
    /// every contact, segment, trigger baseline and event as SQLite does, and the same write
    /// on both fires the same events with the same cursors and gives the same new slots and
    /// ids. A node that had the empty book open before the copy catches up to all of it. The
    /// live file, and a second copy into the same book, are refused.
    @Test func anOracleBookCopiedIntoPostgresAnswersAndFiresAsOnSQLite() async throws {
        let directory = NSTemporaryDirectory() + "segment-pg-migrate-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = ManualTime(TestBook.start)
        var configuration = Engine.Configuration(databasePath: directory + "/book.sqlite", clock: clock)
        configuration.eventRetentionCount = 300
        let sqlite = try Engine(configuration: configuration, registry: TestBook.registry(), logger: TestBook.quietLogger)
        defer { try? sqlite.close() }
        let source = TestBook(borrowing: sqlite, clock: clock)

        // A trigger that sees the whole build, one that fires for the existing members.
        let tagged = try await sqlite.createSegment(name: "tagged", filters: [filter("label", "contains", "tag00")])
        let taggedTrigger = try await sqlite.createTrigger(segment: tagged.id, onEnter: true, onExit: true, includeExisting: false)
        var builder = OracleBookBuilder(seed: 0x316_6A7E, now: TestBook.start)
        var model = try await builder.build(into: source, contacts: 3_000)
        let valuable = try await sqlite.createSegment(name: "valuable", filters: [field("ltv", "greater_than", 1_000)])
        _ = try await sqlite.createTrigger(segment: valuable.id, onEnter: true, onExit: false, includeExisting: true)
        // The newest contact, segment and trigger deleted: SQLite never hands their keys out again.
        let newest = try #require(sqlite.snapshot.alive.slots.max())
        let newestEmail = sqlite.snapshot.emails[newest]
        #expect(try await sqlite.delete(emails: [newestEmail]) == 1)
        model.contacts[try #require(model.indexByKey[newestEmail.lowercased()])].alive = false
        let scratch = try await sqlite.createSegment(name: "scratch", filters: [filter("status", "equals", "pending")])
        _ = try await sqlite.createTrigger(segment: scratch.id, onEnter: true, onExit: true, includeExisting: false)
        _ = try await sqlite.deleteSegment(id: scratch.id, force: true)
        #expect(try await sqlite.pruneEvents() > 0, "retention removed the oldest events")

        let url = try TestPostgres.shared().url
        let name = "m" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let providers = TestBook.registry().providers
        defer { try? PostgresBookSpace(url: url).drop(name) }

        // The file a server (this engine) has open is refused, naming what to do instead.
        #expect {
            _ = try PostgresBookImport.copy(from: configuration.databasePath, to: url, book: name, providers: providers)
        } throws: { error in
            let e = error as? SegmentError
            return e?.kind == .conflict && e?.message.contains("stop that server first, or migrate a backup") == true
        }

        // A node already has the (empty) PostgreSQL book open when the copy lands.
        let early = try TestBook.open(path: "", clock: clock, timeZone: TimeZone(identifier: "UTC")!, extra: [], backend: .postgres, book: name)
        defer { try? early.close() }
        #expect(early.countContacts().total == 0)

        let backup = directory + "/backup.sqlite"
        try sqlite.backup(to: backup)
        var steps = 0
        let report = try PostgresBookImport.copy(from: backup, to: url, book: name, providers: providers) { _ in steps += 1 }
        let version = sqlite.snapshot.version
        let pruned = try Store.inspect(path: backup) { sql in try Self.integer("SELECT value FROM meta WHERE key = 'events_pruned_through'", sql) }
        let eventRows = try Store.inspect(path: backup) { sql in try Self.integer("SELECT COUNT(*) FROM event", sql) }
        let definitions = try Store.inspect(path: backup) { sql in try Self.integer("SELECT COUNT(*) FROM part_definition", sql) }
        #expect(pruned > 0 && eventRows == 300)
        #expect(report.version == version && report.schema == PostgresBookStore.schema(of: name))
        #expect(report.rows("contact") == model.alive.count)
        #expect(report.rows("segment") == 2 && report.rows("trigger") == 2 && report.rows("event") == 300)
        #expect((report.rows("trigger_baseline") ?? 0) > 0 && report.rows("part_definition") == Int(definitions) && definitions > 5)
        #expect(report.tables.map(\.name) == ["meta", "contact", "suppression", "segment", "trigger", "trigger_baseline", "event", "part_definition"]
            + providers.map { "part_" + $0.name })
        #expect(steps >= report.tables.count)

        let pg = try TestBook.open(path: "", clock: clock, timeZone: TimeZone(identifier: "UTC")!, extra: [], backend: .postgres, book: name)
        defer { try? pg.close() }
        let copy = TestBook(borrowing: pg, clock: clock)
        try Self.expectSameBook(pg, sqlite)
        _ = try OracleTests.check(copy, model: model, ruleSeed: 0x316_C0DE, rules: 100, name: "postgres copy: ")

        // The same log: the events kept, from the same cursors, and the same horizon.
        let logged = try await sqlite.readEvents(after: pruned, limit: 10_000)
        #expect(logged.events.count == 300)
        #expect(try await pg.readEvents(after: pruned, limit: 10_000).events == logged.events)
        #expect(pg.newestCursor == sqlite.newestCursor)
        for engine in [pg, sqlite] {
            await #expect {
                _ = try await engine.readEvents(after: pruned - 1, limit: 10)
            } throws: { error in
                (error as? SegmentError)?.details["resume_after"] == .int(pruned)
            }
        }

        // The node that had the empty book open reloads it whole.
        try await early.waitFor(version: version, timeout: .seconds(10))
        try Self.expectSameBook(early, sqlite)
        #expect((early.fleetStatus?.reloads ?? 0) >= 1)

        // The same write on both: the same events (from the same cursors) and the same new
        // slots, past the deleted newest contact's; the next segment takes the same id.
        let before = sqlite.newestCursor
        var docs: [JSONValue] = []
        for (n, c) in model.alive.enumerated() where n % 60 == 0 {
            let has = c.labels.contains("tag00")
            docs.append([
                "email": .string(c.email), has ? "remove_labels" : "add_labels": ["tag00"],
                "fields": ["ltv": .int(n % 120 == 0 ? 5_000 : 10)],
            ])
        }
        docs += (0..<3).map { ["email": .string("new\($0)@migrated.example"), "labels": ["tag00"], "fields": ["ltv": 2_000]] }
        let onSQLite = try await sqlite.upsert(contacts: docs)
        let onPostgres = try await pg.upsert(contacts: docs)
        #expect(onSQLite.created == 3 && onPostgres.created == 3 && onPostgres.updated == onSQLite.updated)
        let fired = try await sqlite.readEvents(after: before, limit: 10_000).events
        #expect(fired.count > 10 && fired.contains { $0.trigger == taggedTrigger.id && $0.type == "exit" })
        #expect(try await pg.readEvents(after: before, limit: 10_000).events == fired)
        for n in 0..<3 {
            let slot = sqlite.snapshot.slot(of: "new\(n)@migrated.example")
            #expect(slot != nil && slot == pg.snapshot.slot(of: "new\(n)@migrated.example") && slot! > newest)
        }
        try Self.expectSameBook(pg, sqlite)
        let next = try await sqlite.createSegment(name: "next", filters: [filter("status", "equals", "active")])
        #expect(try await pg.createSegment(name: "next", filters: [filter("status", "equals", "active")]).id == next.id)
        #expect(next.id > scratch.id)

        // The book is not empty any more: a second copy into it is refused, and changes nothing.
        let versionNow = pg.snapshot.version
        #expect {
            _ = try PostgresBookImport.copy(from: backup, to: url, book: name, providers: providers)
        } throws: { error in
            let e = error as? SegmentError
            return e?.kind == .conflict && e?.message.contains("is not empty: it has \(model.alive.count + 3) contacts, 3 segments") == true
        }
        try await pg.refresh()
        #expect(pg.snapshot.version == versionNow && pg.countContacts().total == model.alive.count + 3)
    }

    /// A file of the first storage layout (one row per field value and per label) is brought
    /// to the current one, then copied: its values arrive exact.
    @Test func anOlderLayoutIsMigratedFirstThenCopied() async throws {
        let directory = NSTemporaryDirectory() + "segment-pg-migrate-old-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/v1.sqlite"
        let registry = TestBook.registry()
        let firstLayout = PartStorage.sqliteMigrations(for: registry.providers)
            .filter { !$0.name.hasSuffix(".v2") && !$0.name.hasSuffix(".v3") && !$0.name.hasPrefix("parts.") }
        let ltv = 0.1 + 0.2
        let store = try Store(path: path, migrations: firstLayout)
        _ = try await store.write({ sql in
            try sql.execute("INSERT INTO field_def(name, type, created_at) VALUES ('ltv', 'number', 0), ('city', 'text', 0)", [])
            for email in ["ana@example.com", "bo@example.com"] {
                try sql.execute("INSERT INTO contact(email, email_key, created_at) VALUES (?, ?, 0)", [.text(email), .text(email)])
                try sql.execute("INSERT INTO contact_status(contact_id, status) VALUES (?, 0)", [.integer(sql.lastInsertRowID)])
            }
            try sql.execute("INSERT INTO contact_field(contact_id, field, value) VALUES (1, 'ltv', ?), (1, 'city', ?)", [.real(ltv), .text("Zoë \"Q\" 東京")])
            try sql.execute("INSERT INTO label(key, name, last_added_at) VALUES ('vip', 'VIP', 0)", [])
            try sql.execute("INSERT INTO contact_label(contact_id, key) VALUES (1, 'vip'), (2, 'vip')", [])
            try sql.execute("INSERT INTO meta(key, value) VALUES ('version', 7)", [])
            return 0
        }, afterCommit: { _ in })
        try store.close()

        let url = try TestPostgres.shared().url
        let name = "m" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        defer { try? PostgresBookSpace(url: url).drop(name) }
        let report = try PostgresBookImport.copy(from: path, to: url, book: name, providers: registry.providers)
        #expect(report.version == 7 && report.rows("contact") == 2 && report.rows("part_field") == 1 && report.rows("part_label") == 2)
        let pg = try TestBook.open(path: "", clock: ManualTime(TestBook.start), timeZone: TimeZone(identifier: "UTC")!, extra: [], backend: .postgres, book: name)
        defer { try? pg.close() }
        let ana = try #require(pg.contact(email: "ana@example.com"))
        #expect(ana["fields"]?["ltv"] == .double(ltv) && ana["fields"]?["city"] == .string("Zoë \"Q\" 東京"))
        #expect(Set(ana["labels"]?.arrayValue ?? []) == [.string("VIP")])
        #expect(try pg.count(filters: [filter("label", "contains", "vip")], audience: .all).matched == 2)
        #expect(pg.snapshot.version == 7)
        // The next contact takes the next slot.
        _ = try await pg.upsert(contacts: [["email": "cy@example.com"]])
        #expect(pg.snapshot.slot(of: "cy@example.com") == 3)
    }

    /// A book with nothing in it copies too (its keys start at 1), and only once: the copy
    /// leaves its mark in `meta`, so a second copy is refused rather than failing half way.
    @Test func anEmptyBookCopiesOnce() async throws {
        let directory = NSTemporaryDirectory() + "segment-pg-migrate-empty-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/empty.sqlite"
        let providers = TestBook.registry().providers
        try Store(path: path, migrations: PartStorage.sqliteMigrations(for: providers)).close()
        let url = try TestPostgres.shared().url
        let name = "m" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        defer { try? PostgresBookSpace(url: url).drop(name) }
        let report = try PostgresBookImport.copy(from: path, to: url, book: name, providers: providers)
        #expect(report.version == 0 && report.tables.allSatisfy { $0.rows == ($0.name == "meta" ? 1 : 0) })
        #expect {
            _ = try PostgresBookImport.copy(from: path, to: url, book: name, providers: providers)
        } throws: { error in
            (error as? SegmentError)?.message.contains("is not empty: it has meta keys change_sequence (it was migrated into before)") == true
        }
        let pg = try TestBook.open(path: "", clock: ManualTime(TestBook.start), timeZone: TimeZone(identifier: "UTC")!, extra: [], backend: .postgres, book: name)
        defer { try? pg.close() }
        _ = try await pg.upsert(contacts: [["email": "ana@example.com"]])
        let segment = try await pg.createSegment(name: "all", filters: [filter("status", "equals", "active")])
        #expect(pg.snapshot.slot(of: "ana@example.com") == 1 && segment.id == 1 && pg.snapshot.version == 2)
    }

    /// What is not a book is refused before anything is opened or created.
    @Test func whatIsNotABookIsRefused() throws {
        let directory = NSTemporaryDirectory() + "segment-pg-migrate-bad-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let url = try PostgresURL("postgres://nobody@/nothing?host=/nonexistent")
        let providers = TestBook.registry().providers
        func refusal(_ path: String) -> String {
            do {
                _ = try PostgresBookImport.copy(from: path, to: url, book: "x", providers: providers)
                return "copied"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal(directory + "/missing.sqlite").contains("No such file"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/missing.sqlite"))
        _ = FileManager.default.createFile(atPath: directory + "/notes.sqlite", contents: Data("not a database\n".utf8))
        #expect(refusal(directory + "/notes.sqlite").contains("is not an SQLite database"))
        let other = try Store(path: directory + "/other.sqlite", migrations: [StoreMigration("x", sql: "CREATE TABLE t (a INTEGER)")])
        try other.close()
        #expect(refusal(directory + "/other.sqlite").contains("not a segmentd book"))
    }

    /// Every contact (as `contacts.get` shows it, in the same slot), segment and trigger
    /// (with its baseline), and the version, as `expected` has them.
    static func expectSameBook(_ engine: Engine, _ expected: Engine, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let book = engine.snapshot, want = expected.snapshot
        #expect(book.version == want.version, sourceLocation: sourceLocation)
        #expect(book.contactCount == want.contactCount && book.alive == want.alive, sourceLocation: sourceLocation)
        var differing: [String] = []
        for slot in want.alive.slots {
            let email = want.emails[slot]
            if book.slot(of: email) != slot || engine.contact(email: email) != expected.contact(email: email) { differing.append(email) }
        }
        #expect(differing.isEmpty, "contacts that differ: \(differing.prefix(5))", sourceLocation: sourceLocation)
        #expect(book.suppressedEmails == want.suppressedEmails, sourceLocation: sourceLocation)
        #expect(book.segments == want.segments, sourceLocation: sourceLocation)
        #expect(book.triggers.keys.sorted() == want.triggers.keys.sorted(), sourceLocation: sourceLocation)
        for (id, trigger) in want.triggers {
            let got = book.triggers[id]
            #expect(got?.segmentID == trigger.segmentID && got?.onEnter == trigger.onEnter && got?.onExit == trigger.onExit, sourceLocation: sourceLocation)
            #expect(got?.createdAt == trigger.createdAt && got?.members == trigger.members, "trigger \(id)'s baseline", sourceLocation: sourceLocation)
        }
    }

    static func integer(_ query: String, _ sql: any SQLExecutor) throws -> Int64 {
        var value: Int64 = 0
        try sql.forEachRow(query, []) { value = $0[0].int64 ?? 0 }
        return value
    }
}
