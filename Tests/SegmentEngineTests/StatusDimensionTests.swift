import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The status dimension: `equals`, `not_equals`, `in`, and the default status.
@Suite(.ownThreads) struct StatusDimensionTests {
    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.seed([
            ["email": "active@example.com", "status": "active"],
            ["email": "pending@example.com", "status": "pending"],
            ["email": "unsub@example.com", "status": "unsubscribed"],
            ["email": "bounce@example.com", "status": "hard_bounce"],
            ["email": "default@example.com"],
        ])
        return book
    }

    static let cases: [FilterCase] = [
        FilterCase("equals active includes the default", filter("status", "equals", "active"), ["active@example.com", "default@example.com"]),
        FilterCase("equals pending", filter("status", "equals", "pending"), ["pending@example.com"]),
        FilterCase("equals hard_bounce", filter("status", "equals", "hard_bounce"), ["bounce@example.com"]),
        FilterCase(
            "not_equals active", filter("status", "not_equals", "active"),
            ["pending@example.com", "unsub@example.com", "bounce@example.com"]),
        FilterCase(
            "not_equals unsubscribed", filter("status", "not_equals", "unsubscribed"),
            ["active@example.com", "pending@example.com", "bounce@example.com", "default@example.com"]),
        FilterCase("in one", filter("status", "in", ["unsubscribed"]), ["unsub@example.com"]),
        FilterCase(
            "in two", filter("status", "in", ["pending", "hard_bounce"]), ["pending@example.com", "bounce@example.com"]),
        FilterCase(
            "in all four", filter("status", "in", ["active", "pending", "unsubscribed", "hard_bounce"]),
            ["active@example.com", "pending@example.com", "unsub@example.com", "bounce@example.com", "default@example.com"]),
        FilterCase("no filters match everyone", .array([]), [
            "active@example.com", "pending@example.com", "unsub@example.com", "bounce@example.com", "default@example.com",
        ]),
    ]

    @Test(arguments: cases)
    func operators(_ c: FilterCase) async throws {
        let book = try await Self.book()
        try check(c, on: book)
    }

    @Test func newContactsDefaultToActiveAndAnUpdateWithoutStatusKeepsIt() async throws {
        let book = try await Self.book()
        #expect(try book.contact("default@example.com")["status"] == "active")
        try await book.seed([["email": "pending@example.com", "name": "Pat"]])
        #expect(try book.contact("pending@example.com")["status"] == "pending")
        try await book.seed([["email": "PENDING@example.com", "status": "active"]])
        #expect(try book.contact("pending@example.com")["status"] == "active")
        #expect(try book.emails([filter("status", "equals", "pending")]).isEmpty)
    }

    @Test func sendAudienceIsActiveAndNotSuppressedWithTheExcludedBreakdown() async throws {
        let book = try await Self.book()
        _ = try await book.engine.suppress(emails: ["Default@Example.com"], reason: "complaint")
        let all = try book.count([], audience: .send)
        #expect(all.matched == 5)
        #expect(all.sendable == 1)
        #expect(all.excluded == ["unsubscribed": 1, "hard_bounce": 1, "pending": 1, "suppressed": 1])
        #expect(try book.emails([], audience: .send) == ["active@example.com"])

        let counts = book.engine.countContacts()
        #expect(counts.total == 5)
        #expect(counts.byStatus == ["active": 2, "pending": 1, "unsubscribed": 1, "hard_bounce": 1])
    }
}
