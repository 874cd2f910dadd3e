import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// Every invalid filter is refused as invalid params, naming the exact JSON path of what is wrong,
/// by compile, count, validate and segment creation alike.
@Suite(.ownThreads) struct InvalidFilterTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let filters: JSONValue
        let path: String
        init(_ name: String, _ filters: JSONValue, _ path: String) {
            self.name = name
            self.filters = filters
            self.path = path
        }
        var testDescription: String { "\(name) → \(path)" }
    }

    static let active = filter("status", "equals", "active")

    static let cases: [Case] = [
        // Shape.
        Case("filters not an array", ["dimension": "status"], "filters"),
        Case("a filter that is not an object", [active, "vip"], "filters[1]"),
        Case("missing dimension", [["op": "equals", "value": "active"]], "filters[0].dimension"),
        Case("unknown dimension", [active, filter("colour", "equals", "red")], "filters[1].dimension"),
        Case("unknown key", [filter("status", "equals", "active", extra: ["colour": "red"])], "filters[0].colour"),
        Case("empty any group", [["any": []]], "filters[0].any"),
        Case("empty nested any group", [active, ["any": [["any": []]]]], "filters[1].any[0].any"),
        Case("bad filter inside an any group", [["any": [active, filter("label", "equals", "vip")]]], "filters[0].any[1].op"),
        Case("any group with another key", [["any": [active], "dimension": "status"]], "filters[0].dimension"),
        Case("any group that is not a list", [["any": "vip"]], "filters[0].any"),
        // Fields.
        Case("unknown field", [active, field("zodiac", "equals", "leo")], "filters[1].field"),
        Case("missing field", [filter("field", "equals", "x")], "filters[0].field"),
        Case("greater_than on text", [field("city", "greater_than", "a")], "filters[0].op"),
        Case("between on text", [field("city", "between", ["a", "b"])], "filters[0].op"),
        Case("contains on a number", [field("ltv", "contains", "1")], "filters[0].op"),
        Case("contains on a boolean", [field("vip", "contains", "t")], "filters[0].op"),
        Case("greater_than on a boolean", [field("vip", "greater_than", true)], "filters[0].op"),
        Case("contains on a date", [field("signup", "contains", "2026")], "filters[0].op"),
        Case("unknown operator", [field("city", "like", "x")], "filters[0].op"),
        Case("text for a number", [field("ltv", "greater_than", "lots")], "filters[0].value"),
        Case("boolean for a number", [field("ltv", "equals", true)], "filters[0].value"),
        Case("string for a boolean", [field("vip", "equals", "true")], "filters[0].value"),
        Case("number for text", [field("city", "equals", 5)], "filters[0].value"),
        Case("empty text", [field("city", "equals", "")], "filters[0].value"),
        Case("missing value", [field("city", "contains")], "filters[0].value"),
        Case("a value on is_empty", [field("city", "is_empty", "x")], "filters[0].value"),
        Case("bad date", [field("signup", "less_than", "2026-02-30")], "filters[0].value"),
        Case("not a date", [field("signup", "equals", "next week")], "filters[0].value"),
        Case("number for a date", [field("signup", "equals", 20260101)], "filters[0].value"),
        Case("between low > high (numbers)", [field("ltv", "between", [10, 5])], "filters[0].value"),
        Case("between low > high (dates)", [field("signup", "between", ["2026-02-01", "2026-01-31"])], "filters[0].value"),
        Case("between with three values", [field("ltv", "between", [1, 2, 3])], "filters[0].value"),
        Case("between not a list", [field("ltv", "between", 5)], "filters[0].value"),
        Case("between with a bad high", [field("ltv", "between", [1, "x"])], "filters[0].value[1]"),
        Case("between with a bad low date", [field("signup", "between", ["soon", "2026-01-01"])], "filters[0].value[0]"),
        // Status.
        Case("status operator", [filter("status", "contains", "active")], "filters[0].op"),
        Case("unknown status", [filter("status", "equals", "asleep")], "filters[0].value"),
        Case("status number", [filter("status", "equals", 5)], "filters[0].value"),
        Case("status in not a list", [filter("status", "in", "active")], "filters[0].value"),
        Case("status in an empty list", [filter("status", "in", [])], "filters[0].value"),
        Case("status in with a number", [filter("status", "in", ["active", 3])], "filters[0].value[1]"),
        Case("status in with an unknown status", [filter("status", "in", ["active", "asleep"])], "filters[0].value[1]"),
        // Labels.
        Case("label operator", [filter("label", "equals", "vip")], "filters[0].op"),
        Case("empty label", [filter("label", "contains", "  ")], "filters[0].value"),
        Case("empty label in a list", [filter("label", "not_contains", ["vip", ""])], "filters[0].value[1]"),
        Case("contains_any not a list", [filter("label", "contains_any", "vip")], "filters[0].value"),
        Case("contains an empty list", [filter("label", "contains", [])], "filters[0].value"),
        Case("label number", [filter("label", "contains", 7)], "filters[0].value"),
        // Funnel.
        Case("unknown stage", [filter("funnel", "equals", "champion")], "filters[0].value"),
        Case("unknown stage in a list", [filter("funnel", "in", ["customer", "champion"])], "filters[0].value[1]"),
        Case("funnel operator", [filter("funnel", "contains", "customer")], "filters[0].op"),
        Case("lost not a boolean", [filter("funnel", "equals", "customer", extra: ["lost": "yes"])], "filters[0].lost"),
        Case("funnel without op or lost", [["dimension": "funnel"]], "filters[0].op"),
        // Engagement.
        Case("unknown event", [engagement("bounce", "ever")], "filters[0].event"),
        Case("missing event", [filter("engagement", "ever")], "filters[0].event"),
        Case("engagement operator", [engagement("open", "on", "2026-01-01")], "filters[0].op"),
        Case("bad engagement date", [engagement("open", "before", "last tuesday")], "filters[0].value"),
        Case("bad engagement between high", [engagement("open", "between", ["2026-01-01", "soon"])], "filters[0].value[1]"),
        Case("engagement between low > high", [engagement("open", "between", ["2026-03-01T00:00:00Z", "2026-02-28"])], "filters[0].value"),
        Case("within_last zero days", [engagement("open", "within_last", days(0))], "filters[0].value.days"),
        Case("within_last negative days", [engagement("click", "not_within_last", days(-3))], "filters[0].value.days"),
        Case("within_last days as text", [engagement("open", "within_last", ["days": "7"])], "filters[0].value.days"),
        Case("within_last without days", [engagement("open", "within_last", [:])], "filters[0].value.days"),
        Case("within_last with a bare number", [engagement("open", "within_last", 7)], "filters[0].value"),
        Case("within_last with another key", [engagement("open", "within_last", ["days": 7, "hours": 2])], "filters[0].value.hours"),
        Case("never with a value", [engagement("open", "never", true)], "filters[0].value"),
    ]

    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.define("city", "text")
        try await book.define("ltv", "number")
        try await book.define("signup", "date")
        try await book.define("vip", "boolean")
        try await book.seed([["email": "a@example.com", "labels": ["vip"]]])
        return book
    }

    @Test(arguments: cases)
    func refusedWithThePath(_ c: Case) async throws {
        let book = try await Self.book()
        let compiled = #expect(throws: SegmentError.self) { try book.engine.compile(filters: c.filters) }
        #expect(compiled?.kind == .invalidParams)
        #expect(compiled?.path == c.path, "message: \(compiled?.message ?? "")")
        #expect(compiled?.message.isEmpty == false)

        let counted = #expect(throws: SegmentError.self) { try book.engine.count(filters: c.filters) }
        #expect(counted?.path == c.path)

        let validation = book.engine.validate(filters: c.filters)
        #expect(!validation.valid)
        #expect(validation.errors.map(\.path) == [c.path])

        let version = book.engine.snapshot.version
        let created = await #expect(throws: SegmentError.self) {
            try await book.engine.createSegment(name: "bad", filters: c.filters)
        }
        #expect(created?.path == c.path)
        #expect(book.engine.segments().isEmpty)
        #expect(book.engine.snapshot.version == version)
    }
}
