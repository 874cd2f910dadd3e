import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// A sixth dimension defined only in the tests plugs in next to the five built-ins.
@Suite(.ownThreads) struct ExtraProviderTests {
    static func book() async throws -> TestBook {
        let book = try TestBook(extra: [ScoreDimension()])
        try await book.seed([
            ["email": "high@example.com", "score": 90, "labels": ["vip"]],
            ["email": "edge@example.com", "score": 50],
            ["email": "low@example.com", "score": 10, "labels": ["vip"], "status": "unsubscribed"],
            ["email": "none@example.com", "labels": ["vip"]],
        ])
        return book
    }

    @Test func contactsCarryItAndItsFiltersWorkEndToEnd() async throws {
        let book = try await Self.book()
        #expect(try book.contact("high@example.com")["score"] == 90)
        #expect(try book.contact("none@example.com")["score"] == .null)
        #expect(try book.contact("high@example.com")["labels"] == ["vip"], "the built-ins still render next to it")

        let atLeast50: JSONValue = [filter("score", "at_least", 50)]
        #expect(try book.emails(atLeast50) == ["high@example.com", "edge@example.com"])
        #expect(try book.emailsByMatching(atLeast50) == ["high@example.com", "edge@example.com"])
        #expect(try book.emails([filter("score", "below", 50)]) == ["low@example.com"])
        #expect(try book.emails([filter("score", "is_set")]) == ["high@example.com", "edge@example.com", "low@example.com"])
        let vipBelow95: JSONValue = [filter("label", "contains", "vip"), filter("score", "below", 95)]
        let count = try book.count(vipBelow95)
        #expect(count.matched == 2)
        #expect(count.sendable == 1)
        #expect(try book.emails(vipBelow95, audience: .send) == ["high@example.com"])
        #expect(try book.emails([["any": [filter("score", "at_least", 80), filter("status", "equals", "unsubscribed")]]]) ==
            ["high@example.com", "low@example.com"])

        // Updates, clearing and deletion go through the provider too.
        try await book.seed([["email": "edge@example.com", "score": 49], ["email": "high@example.com", "score": .null]])
        #expect(try book.emails(atLeast50).isEmpty)
        _ = try await book.engine.delete(emails: ["low@example.com"])
        #expect(try book.emails([filter("score", "is_set")]) == ["edge@example.com"])
    }

    @Test func badScoresAndBadScoreFiltersAreRefusedWithPaths() async throws {
        let book = try await Self.book()
        let result = try await book.engine.upsert(contacts: [["email": "x@example.com", "score": 101], ["email": "y@example.com", "score": 3]])
        #expect(result.created == 1)
        #expect(result.failed.map(\.index) == [0])
        #expect(result.failed.first?.error.path == "contacts[0].score")
        let op = #expect(throws: SegmentError.self) { try book.engine.compile(filters: [filter("label", "contains", "vip"), filter("score", "above", 3)]) }
        #expect(op?.path == "filters[1].op")
        let value = #expect(throws: SegmentError.self) { try book.engine.compile(filters: [filter("score", "below", "high")]) }
        #expect(value?.path == "filters[0].value")
    }

    @Test func itSurvivesARestartAndItsSegmentsNeedReview() async throws {
        let book = try await Self.book()
        let filters: JSONValue = [filter("score", "at_least", 50)]
        let segment = try await book.engine.createSegment(name: "Engaged by score", filters: filters)
        #expect(segment.reviewNeeded, "a dimension outside the dashboard's five needs review")
        #expect(book.engine.validate(filters: filters).reviewNeeded)
        #expect(!book.engine.validate(filters: [filter("label", "contains", "vip")]).reviewNeeded)
        let before = try book.engine.count(segment: segment.id)

        let engine = try book.restart()
        #expect(try engine.segment(id: segment.id).reviewNeeded)
        #expect(try engine.count(segment: segment.id) == before)
        #expect(try book.emails(filters) == ["high@example.com", "edge@example.com"])
        #expect(try book.contact("edge@example.com")["score"] == 50)
    }

    /// What `Segmentd.main(dimensions:)` checks before registering a dimension from outside:
    /// a taken name, a malformed one, or a contact key the core or another dimension reads is
    /// an error naming it (not a crash).
    @Test func aClashingDimensionIsRefusedNamingTheClash() throws {
        struct Named: DimensionProvider {
            let name: String
            var contactKeys: [String] = []
            var methods: [DimensionMethod] = []
            var descriptor: DimensionDescriptor { DimensionDescriptor(name: name, summary: "", operators: []) }
            func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? { nil }
            func apply(batch: [ContactWrite], context: inout WriteContext) throws {}
            func remove(slot: Int, context: inout WriteContext) throws {}
            func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {}
            func load(_ stored: StoredParts, into book: inout Book) throws {}
            func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
                throw .invalidParams(path: filter.path, "never compiled here")
            }
            func render(slot: Int, book: Book) -> [String: JSONValue] { [:] }
        }
        let registry = TestBook.registry(extra: [ScoreDimension()])
        #expect(registry.refusal(for: Named(name: "label"))?.contains("two dimensions are named \"label\"") == true)
        #expect(registry.refusal(for: Named(name: "Mailbox"))?.contains("lower-case letters") == true)
        #expect(registry.refusal(for: Named(name: "tags", contactKeys: ["labels"])) == "contact key \"labels\" of dimension tags is already dimension label's")
        #expect(registry.refusal(for: Named(name: "owner", contactKeys: ["email"])) == "contact key \"email\" of dimension owner is the core's")
        let labelMethod = try #require(registry.provider(named: "label")?.methods.first)
        #expect(registry.refusal(for: Named(name: "tags", methods: [labelMethod])) == "method \(labelMethod.name) of dimension tags is already dimension label's")
        #expect(registry.refusal(for: Named(name: "tier", contactKeys: ["tier"])) == nil)
    }
}
