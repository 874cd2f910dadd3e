import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// Invalid contacts fail alone with their index and path; an atomic batch with one bad item
/// writes nothing; a refused item never half-applies.
@Suite(.ownThreads) struct InvalidContactTests {
    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.define("ltv", "number")
        try await book.define("signup", "date")
        try await book.define("vip", "boolean")
        try await book.seed([["email": "existing@example.com", "status": "pending", "labels": ["old"], "fields": ["ltv": 5]]])
        return book
    }

    /// Index in the batch → the path its error must name.
    static let bad: [Int: String] = [
        1: "contacts[1].email", 3: "contacts[3].status", 4: "contacts[4].funnel", 5: "contacts[5].fields.ltv",
        6: "contacts[6].fields.zodiac", 7: "contacts[7].colour", 8: "contacts[8].labels[0]", 9: "contacts[9].lost",
        10: "contacts[10].fields.signup", 11: "contacts[11].fields.vip", 12: "contacts[12].email", 14: "contacts[14]",
        15: "contacts[15].email", 16: "contacts[16].email", 17: "contacts[17].fields.email", 18: "contacts[18].add_labels[1]",
        19: "contacts[19].status", 20: "contacts[20].email",
        21: "contacts[21].email", 22: "contacts[22].email",
    ]

    static let batch: [JSONValue] = [
        ["email": "good0@example.com", "labels": ["vip"]],
        ["email": "not-an-email"],
        ["email": "good2@example.com", "status": "unsubscribed", "funnel": "customer"],
        ["email": "bad3@example.com", "status": "asleep"],
        ["email": "bad4@example.com", "funnel": "champion"],
        ["email": "bad5@example.com", "fields": ["ltv": "lots"]],
        ["email": "bad6@example.com", "fields": ["zodiac": "leo"]],
        ["email": "bad7@example.com", "colour": "red"],
        ["email": "bad8@example.com", "labels": [1]],
        ["email": "bad9@example.com", "lost": "yes"],
        ["email": "bad10@example.com", "fields": ["signup": "2026-13-01"]],
        ["email": "bad11@example.com", "fields": ["vip": "true"]],
        ["name": "No Email"],
        ["email": "good13@example.com", "fields": ["ltv": 12.5, "signup": "2026-01-01", "vip": false]],
        "just a string",
        ["email": "bad15@localhost"],
        ["email": "bad 16@example.com"],
        ["email": "bad17@example.com", "fields": ["email": "other@example.com"]],
        ["email": "bad18@example.com", "add_labels": ["ok", " "]],
        // An update of an existing contact with one bad key changes nothing at all.
        ["email": "EXISTING@example.com", "labels": ["new"], "fields": ["ltv": 6], "status": "gone"],
        ["email": 42],
        // Control characters and non-ASCII whitespace are refused like ASCII spaces.
        ["email": "bad\u{7}21@example.com"],
        ["email": "bad\u{00A0}22@example.com"],
        ["email": "zoë23@example.com"],
    ]

    @Test func eachBadItemFailsAloneWithItsIndexAndPath() async throws {
        let book = try await Self.book()
        let result = try await book.engine.upsert(contacts: Self.batch, atomic: false)
        #expect(result.created == 4)
        #expect(result.updated == 0)
        #expect(result.failed.map(\.index) == Self.bad.keys.sorted())
        for (index, error) in result.failed {
            #expect(error.kind == .invalidParams, "item \(index)")
            #expect(error.path == Self.bad[index], "item \(index): \(error)")
        }
        #expect(book.engine.countContacts().total == 5)
        for good in ["good0@example.com", "good2@example.com", "good13@example.com", "zoë23@example.com"] {
            #expect(book.engine.contact(email: good) != nil, "\(good) was written")
        }
        #expect(try book.contact("good2@example.com")["status"] == "unsubscribed")
        #expect(try book.contact("good13@example.com")["fields"] == ["ltv": 12.5, "signup": "2026-01-01T00:00:00Z", "vip": false])
        for i in Self.bad.keys { #expect(book.engine.contact(email: "bad\(i)@example.com") == nil) }

        let existing = try book.contact("existing@example.com")
        #expect(existing["labels"] == ["old"])
        #expect(existing["status"] == "pending")
        #expect(existing["fields"]?["ltv"] == 5)
    }

    @Test func anAtomicBatchWithOneBadItemWritesNothing() async throws {
        let book = try await Self.book()
        let before = book.engine.snapshot.version
        let batch: [JSONValue] = [
            ["email": "new@example.com", "labels": ["vip"]],
            ["email": "existing@example.com", "status": "active", "labels": ["new"]],
            ["email": "broken@example.com", "funnel": "champion"],
        ]
        let error = await #expect(throws: SegmentError.self) { try await book.engine.upsert(contacts: batch, atomic: true) }
        #expect(error?.kind == .invalidParams)
        #expect(error?.path == "contacts[2].funnel")
        #expect(book.engine.snapshot.version == before)
        #expect(book.engine.countContacts().total == 1)
        #expect(book.engine.contact(email: "new@example.com") == nil)
        #expect(try book.contact("existing@example.com")["status"] == "pending")
        #expect(try book.emails([filter("label", "contains_any", ["vip", "new"])]).isEmpty)

        // The same batch without the bad item goes through whole.
        let fixed = try await book.engine.upsert(contacts: Array(batch.prefix(2)), atomic: true)
        #expect(fixed.created == 1 && fixed.updated == 1 && fixed.failed.isEmpty)
        #expect(try book.emails([filter("label", "contains_any", ["vip", "new"])]) == ["new@example.com", "existing@example.com"])
    }

    @Test func emailIsTheIdentityComparedCaseInsensitivelyAndStoredAsGiven() async throws {
        let book = try TestBook()
        let first = try await book.engine.upsert(contacts: [["email": "Ana.Lima@Example.com"]])
        #expect(first.created == 1)
        let again = try await book.engine.upsert(contacts: [["email": "ana.lima@EXAMPLE.COM", "labels": ["x"]], ["email": " ana.lima@example.com "]])
        #expect(again.created == 0 && again.updated == 2)
        #expect(book.engine.countContacts().total == 1)
        #expect(try book.contact("ANA.LIMA@example.com")["email"] == "Ana.Lima@Example.com")
        #expect(try book.emails([filter("label", "contains", "x")]) == ["Ana.Lima@Example.com"])

        #expect(try await book.engine.delete(emails: ["ANA.LIMA@EXAMPLE.COM", "nobody@example.com"]) == 1)
        #expect(book.engine.contact(email: "ana.lima@example.com") == nil)
        #expect(try book.count([]).matched == 0)
    }

    /// The checks run on bytes with fast paths for ASCII; these pin what they accept, what
    /// they refuse, and that the first bad key (in key order) is the one named.
    @Test func emailShapesTrimmingAndTheFirstBadKeyAreExact() async throws {
        let book = try await Self.book()
        let refused = ["a@b@example.com", "@example.com", "ana@.example.com", "ana@example.com.", "ana@examplecom", "ana@"]
        let result = try await book.engine.upsert(contacts: refused.map { ["email": .string($0)] } + [
            ["email": "o'neil+tag@sub.example.co", "labels": [" vip\t", "Zoë ", "\u{00A0}wide\u{3000}"]],
            ["email": "ÉLODIE@Example.com"],
            ["email": "unknowns@example.com", "fields": ["zz": 1, "aa": 1, "ltv": 2]],
        ])
        #expect(result.failed.map(\.index) == Array(0..<refused.count) + [refused.count + 2])
        for (index, error) in result.failed.prefix(refused.count) { #expect(error.path == "contacts[\(index)].email") }
        #expect(result.failed.last?.error.path == "contacts[\(refused.count + 2)].fields.aa")
        #expect(Set(try book.contact("o'neil+tag@sub.example.co")["labels"]?.arrayValue ?? []) == ["vip", "Zoë", "wide"])
        // Non-ASCII addresses compare case-insensitively too.
        let again = try await book.engine.upsert(contacts: [["email": "élodie@EXAMPLE.COM", "labels": ["seen"]]])
        #expect(again.updated == 1 && again.created == 0)
        #expect(try book.contact("ÉLODIE@example.com")["email"] == "ÉLODIE@Example.com")
    }

    /// Addresses Swift's string equality treats as one (canonical equivalence: U+037E is a
    /// semicolon) are one contact, in one batch and across calls, like any case variant.
    @Test func canonicallyEquivalentAddressesAreOneContact() async throws {
        let book = try TestBook()
        let batch = try await book.engine.upsert(contacts: [["email": "a;b@example.com"], ["email": "A\u{037E}B@example.com", "labels": ["x"]]])
        #expect(batch.created == 1 && batch.updated == 1 && batch.failed.isEmpty)
        let again = try await book.engine.upsert(contacts: [["email": "a\u{037E}b@EXAMPLE.com", "labels": ["y"]]])
        #expect(again.created == 0 && again.updated == 1)
        #expect(book.engine.countContacts().total == 1)
        #expect(try book.contact("a;b@example.com")["labels"] == ["y"])
    }

    @Test func aBatchOverTheLimitIsRefusedWhole() async throws {
        let book = try await Self.book()
        let limit = book.engine.configuration.maxBatch
        let docs: [JSONValue] = (0...limit).map { ["email": .string("bulk\($0)@example.com")] }
        let error = await #expect(throws: SegmentError.self) { try await book.engine.upsert(contacts: docs) }
        #expect(error?.kind == .tooLarge)
        #expect(error?.path == "contacts")
        #expect(book.engine.countContacts().total == 1)
    }
}
