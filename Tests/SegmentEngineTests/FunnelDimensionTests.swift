import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The funnel dimension: `equals`, `not_equals`, `in`, the `lost` flag alone and combined.
@Suite(.ownThreads) struct FunnelDimensionTests {
    static let aware = "aware@example.com", engaged = "engaged@example.com", customer = "customer@example.com"
    static let loyal = "loyal@example.com", promoter = "promoter@example.com", lostCustomer = "lost-customer@example.com"
    static let none = "none@example.com", lostNone = "lost-none@example.com"

    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.seed([
            ["email": .string(aware), "funnel": "aware"],
            ["email": .string(engaged), "funnel": "engaged", "lost": false],
            ["email": .string(customer), "funnel": "customer"],
            ["email": .string(loyal), "funnel": "loyal_customer"],
            ["email": .string(promoter), "funnel": "promoter", "lost": true],
            ["email": .string(lostCustomer), "funnel": "customer", "lost": true],
            ["email": .string(none)],
            ["email": .string(lostNone), "lost": true],
        ])
        return book
    }

    static let cases: [FilterCase] = [
        FilterCase("equals", filter("funnel", "equals", "customer"), [customer, lostCustomer]),
        FilterCase("equals aware", filter("funnel", "equals", "aware"), [aware]),
        FilterCase("equals with lost false", filter("funnel", "equals", "customer", extra: ["lost": false]), [customer]),
        FilterCase("equals with lost true", filter("funnel", "equals", "customer", extra: ["lost": true]), [lostCustomer]),
        FilterCase(
            "not_equals includes contacts without a stage", filter("funnel", "not_equals", "customer"),
            [aware, engaged, loyal, promoter, none, lostNone]),
        FilterCase(
            "not_equals with lost false", filter("funnel", "not_equals", "customer", extra: ["lost": false]),
            [aware, engaged, loyal, none]),
        FilterCase(
            "in", filter("funnel", "in", ["customer", "loyal_customer", "promoter"]), [customer, lostCustomer, loyal, promoter]),
        FilterCase(
            "in with lost false", filter("funnel", "in", ["customer", "loyal_customer", "promoter"], extra: ["lost": false]),
            [customer, loyal]),
        FilterCase("in with lost true", filter("funnel", "in", ["aware", "promoter"], extra: ["lost": true]), [promoter]),
        FilterCase("lost true alone", ["dimension": "funnel", "lost": true], [promoter, lostCustomer, lostNone]),
        FilterCase("lost false alone", ["dimension": "funnel", "lost": false], [aware, engaged, customer, loyal, none]),
    ]

    @Test(arguments: cases)
    func operators(_ c: FilterCase) async throws {
        try check(c, on: try await Self.book())
    }

    @Test func stageAndLostAreUpdatedIndependentlyAndNullClearsTheStage() async throws {
        let book = try await Self.book()
        #expect(try book.contact(Self.promoter)["funnel"] == "promoter")
        #expect(try book.contact(Self.promoter)["lost"] == true)
        #expect(try book.contact(Self.none)["funnel"] == .null)
        #expect(try book.contact(Self.none)["lost"] == false)
        try await book.seed([
            ["email": .string(Self.promoter), "lost": false],
            ["email": .string(Self.customer), "funnel": .null],
            ["email": .string(Self.aware), "funnel": "engaged"],
        ])
        #expect(try book.contact(Self.promoter)["funnel"] == "promoter")
        #expect(try book.contact(Self.promoter)["lost"] == false)
        #expect(try book.contact(Self.customer)["funnel"] == .null)
        #expect(try book.emails([filter("funnel", "equals", "engaged")]) == [Self.aware, Self.engaged])
        #expect(try book.emails([filter("funnel", "equals", "customer")]) == [Self.lostCustomer])
        #expect(try book.emails([["dimension": "funnel", "lost": true]]) == [Self.lostCustomer, Self.lostNone])
    }
}
