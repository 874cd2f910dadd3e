import PostgresStore
import SegmentCore
import SegmentEngine
import SegmentStore
import TestPostgres
import TestThreads
import Testing
import WireJSON

/// Closing and reopening an engine on the same file gives the same answers: counts, contacts,
/// segments, fields, labels, suppression and the version.
@Suite(.ownThreads) struct RestartTests {
    /// Everything a client can ask, gathered into comparable values.
    struct Answers: Equatable {
        var version: Int64
        var counts: [CountResult]
        var members: [Set<String>]
        var contacts: [String: JSONValue]
        var segments: [Segment]
        var segmentCounts: [CountResult]
        var fields: JSONValue
        var labels: JSONValue
        var total: Int
        var byStatus: [String: Int]
        var suppression: [JSONValue]
    }

    static let rules: [JSONValue] = ShapesBook.shapes.map(\.filters) + [
        [],
        [filter("label", "not_contains", ["vip", "newsletter"])],
        [["any": [field("city", "contains", "jak"), ["dimension": "funnel", "lost": true]]]],
        [engagement("open", "within_last", days(30))],
        [field("created_at", "is_not_empty")],
        [filter("status", "in", ["pending", "hard_bounce"])],
    ]

    static func answers(_ book: TestBook, emails: [String]) async throws -> Answers {
        let engine = book.engine
        var contacts: [String: JSONValue] = [:]
        for email in emails { contacts[email] = engine.contact(email: email) ?? .null }
        let counts = engine.countContacts()
        var suppression: [JSONValue] = []
        for email in ["wati@example.com", "ghost@example.com", "nobody@example.com"] {
            suppression.append(try await engine.suppression(of: email))
        }
        suppression.append(try await engine.suppressionList(after: nil, limit: 100))
        return Answers(
            version: engine.snapshot.version,
            counts: try rules.map { try engine.count(filters: $0, audience: .send) },
            members: try rules.map { try book.emails($0) },
            contacts: contacts,
            segments: engine.segments(),
            segmentCounts: try engine.segments().map { try engine.count(segment: $0.id) },
            fields: try await engine.run(try book.method("fields.list"), params: [:]),
            labels: try await engine.run(try book.method("labels.list"), params: [:]),
            total: counts.total, byStatus: counts.byStatus, suppression: suppression)
    }

    /// Loading reads whole tables a page at a time: every row once, in key order, whatever
    /// the page size (PostgreSQL's driver holds a statement's rows until the last arrives).
    @Test(arguments: Backend.allCases) func scansReadEveryRowOncePageByPage(_ backend: Backend) async throws {
        let book = try TestBook(backend: backend)
        let emails = (0..<25).map { "p\($0)@example.com" }
        _ = try await book.engine.upsert(contacts: emails.map { ["email": .string($0), "labels": ["x"]] })
        let store: any BookStore = backend == .sqlite
            ? try Store(path: book.path, migrations: PartStorage.sqliteMigrations(for: TestBook.registry().providers), readOnly: true)
            : try PostgresBookStore(url: TestPostgres.shared().url, book: book.bookName, providers: TestBook.registry().providers, listens: false)
        defer { try? store.close() }
        for pageSize in [1, 7, 25, 26, 50_000] {
            let (ids, labelled) = try store.readNow { sql in
                var ids: [Int64] = [], labelled: [Int64] = []
                try PartStorage.scan("SELECT id, email FROM contact", key: "id", pageSize: pageSize, sql: sql) { ids.append($0[0].int64!) }
                try PartStorage.scan("SELECT contact_id, doc FROM part_label", key: "contact_id", pageSize: pageSize, sql: sql) { labelled.append($0[0].int64!) }
                return (ids, labelled)
            }
            #expect(ids.count == 25 && ids == ids.sorted() && Set(ids).count == 25, "page size \(pageSize): \(ids)")
            #expect(labelled == ids, "page size \(pageSize)")
        }
    }

    /// A database a newer segmentd migrated further is refused, not read with the wrong
    /// schema nor migrated again (there is no downgrade).
    @Test func aBookMigratedByANewerSegmentdIsRefused() async throws {
        let book = try TestBook()
        try await book.seed([["email": "ana@example.com"]])
        try book.engine.close()
        let store = try Store(path: book.path, migrations: PartStorage.sqliteMigrations(for: TestBook.registry().providers))
        _ = try await store.write({ sql in
            try sql.execute("INSERT INTO grdb_migrations(identifier) VALUES ('zzz.from-a-newer-version')", [])
        }, afterCommit: { _ in })
        try store.close()
        #expect {
            try book.restart()
        } throws: { error in
            (error as? SegmentError)?.kind == .conflict && "\(error)".contains("migrated by a newer segmentd, or by one built with dimensions this one lacks (storage migrations it does not know: zzz.from-a-newer-version)")
        }
    }

    @Test(arguments: Backend.allCases) func reopeningTheFileGivesIdenticalAnswers(_ backend: Backend) async throws {
        let book = try TestBook(backend: backend)
        try await ShapesBook.build(book)
        // Later writes of every kind: a deleted contact, label edits, a funnel change, a cleared
        // field, an address suppressed before it is a contact, segments created, updated, deleted.
        book.clock.advance(seconds: 30)
        try await book.seed([
            ["email": "umar@example.com", "add_labels": ["newsletter"], "remove_labels": ["VIP"], "funnel": "customer"],
            ["email": "vina@example.com", "fields": ["lifetime_value": .null], "lost": true],
        ])
        _ = try await book.engine.delete(emails: ["yoga@example.com"])
        _ = try await book.engine.suppress(emails: ["ghost@example.com"], reason: "bounced elsewhere")
        for shape in ShapesBook.shapes {
            _ = try await book.engine.createSegment(name: shape.name, description: "the \(shape.name) shape", filters: shape.filters)
        }
        let grouped = try await book.engine.createSegment(name: "Grouped", filters: Self.rules[7])
        _ = try await book.engine.updateSegment(id: grouped.id, description: "edited")
        let doomed = try await book.engine.createSegment(name: "Doomed", filters: [])
        _ = try await book.engine.deleteSegment(id: doomed.id)

        let emails = ShapesBook.shapes.flatMap(\.members) + ["rina@example.com", "yoga@example.com", "zaki@example.com", "ghost@example.com"]
        let before = try await Self.answers(book, emails: Array(Set(emails)).sorted())
        #expect(before.segments.count == 6)
        #expect(before.contacts["yoga@example.com"] == .null)

        try book.restart()
        let after = try await Self.answers(book, emails: Array(Set(emails)).sorted())
        #expect(after.version == before.version)
        #expect(after.counts == before.counts)
        #expect(after.members == before.members)
        #expect(after.contacts == before.contacts)
        #expect(after.segments == before.segments)
        #expect(after.segmentCounts == before.segmentCounts)
        #expect(after.fields == before.fields)
        #expect(after.labels == before.labels)
        #expect(after.total == before.total && after.byStatus == before.byStatus)
        #expect(after.suppression == before.suppression)
        #expect(after.segments.first { $0.name == "Grouped" }?.reviewNeeded == true)

        // The reopened engine keeps writing from where it was: the version goes on, a new contact
        // does not take a deleted one's slot, and a re-added deleted email is a new contact.
        try await book.seed([["email": "yoga@example.com", "labels": ["newsletter"]]])
        #expect(book.engine.snapshot.version == before.version + 1)
        #expect(try book.contact("yoga@example.com")["status"] == "active")
        #expect(try book.contact("yoga@example.com")["engagement"]?["last_open_at"] == .null)
        #expect(try book.emails(ShapesBook.shapes[0].filters).contains("yoga@example.com"))
    }

    @Test(arguments: Backend.allCases) func aRandomBookReopensWithTheSameMembersForEveryRule(_ backend: Backend) async throws {
        let book = try TestBook(backend: backend)
        var builder = OracleBookBuilder(seed: 42, now: TestBook.start)
        let model = try await builder.build(into: book, contacts: 3_000)
        var generator = OracleFilterGenerator(seed: 7, now: TestBook.start, book: model)
        let rules = (0..<60).map { _ in generator.rule().json }
        let emails = model.contacts.map(\.email)

        let counts = try rules.map { try book.count($0) }
        let members = try rules.map { try book.emails($0) }
        let contacts = emails.map { book.engine.contact(email: $0) }
        let version = book.engine.snapshot.version

        try book.restart()
        #expect(book.engine.snapshot.version == version)
        #expect(try rules.map { try book.count($0) } == counts)
        #expect(try rules.map { try book.emails($0) } == members)
        let reloaded = emails.map { book.engine.contact(email: $0) }
        #expect(reloaded == contacts)
        #expect(reloaded.compactMap { $0 }.count == model.alive.count)
    }

    @Test(arguments: Backend.allCases) func fieldsKeepTheirDeclarationOrderAcrossARestart(_ backend: Backend) async throws {
        let book = try TestBook(backend: backend)
        // Declared in one instant (the clock does not move), in non-alphabetical order.
        try await book.define("zeta", "text")
        try await book.define("alpha", "number")
        try await book.define("mid", "date")
        let names = { () async throws -> [String] in
            let list = try await book.engine.run(try book.method("fields.list"), params: [:])
            return list.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        }
        let declared = ["email", "name", "created_at", "zeta", "alpha", "mid"]
        #expect(try await names() == declared)
        try book.restart()
        #expect(try await names() == declared)
    }
}

extension RestartTests {
    /// Text goes to SQLite as bytes and a length: an embedded NUL, non-ASCII and long text
    /// come back from the file exactly, not cut short; "" clears the value (documented).
    @Test(arguments: Backend.allCases) func unusualTextSurvivesTheFileExactly(_ backend: Backend) async throws {
        let book = try TestBook(backend: backend)
        try await book.define("note", "text")
        let notes = ["", "a\u{0}b", "Zoë — 東京 🚀", String(repeating: "x", count: 5_000)]
        let docs: [JSONValue] = notes.enumerated().map { i, note in
            ["email": .string("t\(i)@example.com"), "name": .string(note), "fields": ["note": .string(note)]]
        }
        _ = try await book.engine.upsert(contacts: docs)
        try book.restart()
        for (i, note) in notes.enumerated() {
            let contact = try #require(book.engine.contact(email: "t\(i)@example.com"))
            let expected: String? = note.isEmpty ? nil : note
            #expect(contact["fields"]?["note"]?.stringValue == expected, "contact \(i)")
            #expect(contact["name"]?.stringValue == expected, "contact \(i)")
        }
    }
}

extension RestartTests {
    /// A contact's stored field document is the canonical JSON of its values (sorted keys,
    /// exact numbers): written byte by byte, it must stay what `JSONValue.serialized()` writes
    /// and what the `field.v2` migration wrote, or a restart could read back something else.
    @Test func storedFieldDocumentsAreCanonicalJSON() async throws {
        let book = try TestBook()
        for (name, type) in [("zeta", "text"), ("ltv", "number"), ("orders", "number"), ("signup", "date"), ("vip", "boolean")] {
            try await book.define(name, type)
        }
        let ltv = 0.1 + 0.2
        _ = try await book.engine.upsert(contacts: [
            ["email": "ana@example.com", "name": "Ana \"A\" Zoë",
             "fields": ["zeta": "東京\n", "ltv": .double(ltv), "orders": 3, "signup": "2026-01-31T08:00:00Z", "vip": false]],
            ["email": "bo@example.com", "fields": ["vip": true]],
            ["email": "cy@example.com", "labels": ["no-fields"]],
        ])
        let signup = try #require(ISOTime().parseInstant("2026-01-31T08:00:00Z"))
        let stored = try storedColumn(at: book.path, "SELECT doc FROM part_field ORDER BY contact_id").map { String(decoding: $0.bytes ?? [], as: UTF8.self) }
        let expected: [JSONValue] = [
            ["name": "Ana \"A\" Zoë", "zeta": "東京\n", "ltv": .double(ltv), "orders": .double(3), "signup": .double(signup), "vip": false],
            ["vip": true],
        ]
        #expect(stored == expected.map { $0.serialized() })
        try book.restart()
        #expect(book.engine.contact(email: "ana@example.com")?["fields"]?["ltv"] == .double(ltv))
    }
}

extension RestartTests {
    /// Rows are written a hundred per statement, so a batch of 250 spans three statements per
    /// table. A contact repeated in the batch is created by its first occurrence and updated
    /// by the later ones, and a later occurrence that clears labels and fields deletes rows
    /// the earlier one left waiting: the file must end up with what the book answers.
    @Test(arguments: Backend.allCases) func aLargeBatchWithRepeatsReopensIdentically(_ backend: Backend) async throws {
        let book = try TestBook(backend: backend)
        try await book.define("city", "text")
        var docs: [JSONValue] = (0..<250).map { i in
            ["email": .string("bulk\(i)@example.com"), "status": i % 3 == 0 ? "unsubscribed" : "active",
             "labels": .array([.string("l\(i % 7)")]), "fields": ["city": .string("City \(i % 11)")], "funnel": "aware"]
        }
        docs[150] = ["email": "BULK130@example.com", "labels": [], "fields": ["city": .null], "funnel": "customer", "status": "hard_bounce"]
        docs[230] = ["email": "bulk20@example.com", "add_labels": ["late"], "lost": true]
        let result = try await book.engine.upsert(contacts: docs)
        #expect(result.created == 248 && result.updated == 2 && result.failed.isEmpty, "\(result.created) created, \(result.updated) updated, \(result.failed.count) failed")
        let emails = (0..<250).map { "bulk\($0)@example.com" }
        let before = emails.map { book.engine.contact(email: $0) }
        let cleared = try #require(before[130])  // its rows still waited in the statement when cleared
        #expect(cleared["labels"] == [] && cleared["fields"]?["city"] == .null && cleared["funnel"] == "customer" && cleared["status"] == "hard_bounce")
        #expect(before[20]?["labels"] == ["l6", "late"] && before[20]?["lost"] == true)
        try book.restart()
        #expect(emails.map { book.engine.contact(email: $0) } == before)
        #expect(try book.count([filter("label", "contains", "late")]).matched == 1)
    }
}
