import Foundation
import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The field dimension: text, number, date and boolean custom fields and the system fields,
/// every operator with its edges (case, inclusive/exclusive bounds, whole days, missing values).
@Suite(.ownThreads) struct FieldDimensionTests {
    static let a = "ana@example.com", b = "budi@example.com", c = "cici@example.com"
    static let d = "dedi@example.com", e = "eka@example.com", f = "fajar@example.com"
    static let everyone = [a, b, c, d, e, f]

    /// a, b created at now−10 days; c, d at now−5 days; e, f at now.
    static func book() async throws -> TestBook {
        let clock = ManualTime(TestBook.start - 10 * TestBook.day)
        let book = try TestBook(clock: clock)
        try await book.define("city", "text")
        try await book.define("ltv", "number")
        try await book.define("signup", "date")
        try await book.define("vip", "boolean")
        try await book.seed([
            ["email": .string(a), "name": "Ana Lima",
             "fields": ["city": "Jakarta", "ltv": 1000, "signup": "2026-01-31", "vip": true]],
            ["email": .string(b), "name": "Budi",
             "fields": ["city": "JAKARTA Selatan", "ltv": 1000.5, "signup": "2026-01-31T23:59:59Z", "vip": false]],
        ])
        clock.advance(days: 5)
        try await book.seed([
            ["email": .string(c), "name": "Cici",
             "fields": ["city": "Bandung", "ltv": 999.99, "signup": "2026-02-01T00:00:00Z", "vip": true]],
            ["email": .string(d), "fields": ["city": "jakarta", "ltv": 0, "signup": "2026-01-30T23:59:59Z"]],
        ])
        clock.advance(days: 5)
        try await book.seed([
            ["email": .string(e)],
            ["email": .string(f), "fields": ["city": "", "ltv": -5, "signup": "2025-12-31T12:00:00Z", "vip": .null]],
        ])
        return book
    }

    static let text: [FilterCase] = [
        FilterCase("equals is case-insensitive", field("city", "equals", "JAKARTA"), [a, d]),
        FilterCase("equals is the whole value", field("city", "equals", "jakarta"), [a, d]),
        FilterCase("not_equals includes contacts without a value", field("city", "not_equals", "Jakarta"), [b, c, e, f]),
        FilterCase("contains is case-insensitive", field("city", "contains", "jaKARta"), [a, b, d]),
        FilterCase("contains a middle part", field("city", "contains", "selat"), [b]),
        FilterCase("not_contains includes contacts without a value", field("city", "not_contains", "JAKARTA"), [c, e, f]),
        FilterCase("is_empty: never set and set to empty text", field("city", "is_empty"), [e, f]),
        FilterCase("is_not_empty", field("city", "is_not_empty"), [a, b, c, d]),
    ]

    static let number: [FilterCase] = [
        FilterCase("greater_than is exclusive", field("ltv", "greater_than", 1000), [b]),
        FilterCase("greater_than a fraction", field("ltv", "greater_than", 999.99), [a, b]),
        FilterCase("greater_than a negative", field("ltv", "greater_than", -5), [a, b, c, d]),
        FilterCase("less_than is exclusive", field("ltv", "less_than", 999.99), [d, f]),
        FilterCase("less_than", field("ltv", "less_than", 1000), [c, d, f]),
        FilterCase("between is inclusive at both ends", field("ltv", "between", [999.99, 1000]), [a, c]),
        FilterCase("between a single point", field("ltv", "between", [1000, 1000]), [a]),
        FilterCase("between negatives and zero", field("ltv", "between", [-5, 0]), [d, f]),
        FilterCase("equals compares numerically", field("ltv", "equals", 1000.0), [a]),
        FilterCase("equals zero", field("ltv", "equals", 0), [d]),
        FilterCase("not_equals includes contacts without a value", field("ltv", "not_equals", 1000), [b, c, d, e, f]),
        FilterCase("is_empty", field("ltv", "is_empty"), [e]),
        FilterCase("is_not_empty", field("ltv", "is_not_empty"), [a, b, c, d, f]),
    ]

    static let date: [FilterCase] = [
        FilterCase("less_than a date: earlier than the day's start", field("signup", "less_than", "2026-01-31"), [d, f]),
        FilterCase("greater_than a date: later than the day's end", field("signup", "greater_than", "2026-01-31"), [c]),
        FilterCase("greater_than the day before", field("signup", "greater_than", "2026-01-30"), [a, b, c]),
        FilterCase("equals a date: that whole day", field("signup", "equals", "2026-01-31"), [a, b]),
        FilterCase("not_equals a date includes no value", field("signup", "not_equals", "2026-01-31"), [c, d, e, f]),
        FilterCase("between one day", field("signup", "between", ["2026-01-31", "2026-01-31"]), [a, b]),
        FilterCase("between two days: d1's start to d2's end", field("signup", "between", ["2026-01-30", "2026-01-31"]), [a, b, d]),
        FilterCase("equals a timestamp is exact", field("signup", "equals", "2026-01-31T23:59:59Z"), [b]),
        FilterCase("equals a timestamp with an offset", field("signup", "equals", "2026-02-01T07:00:00+07:00"), [c]),
        FilterCase("less_than a timestamp is exclusive", field("signup", "less_than", "2026-01-31T23:59:59Z"), [a, d, f]),
        FilterCase("greater_than a timestamp is exclusive", field("signup", "greater_than", "2026-01-31T23:59:59Z"), [c]),
        FilterCase(
            "between timestamps is inclusive", field("signup", "between", ["2026-01-31T00:00:00Z", "2026-01-31T23:59:59Z"]), [a, b]),
        FilterCase("between a timestamp and a date", field("signup", "between", ["2026-01-31T00:00:01Z", "2026-02-01"]), [b, c]),
        FilterCase("between a time and the end of that same day", field("signup", "between", ["2026-01-31T00:00:01Z", "2026-01-31"]), [b]),
        FilterCase("is_empty", field("signup", "is_empty"), [e]),
        FilterCase("is_not_empty", field("signup", "is_not_empty"), [a, b, c, d, f]),
    ]

    static let boolean: [FilterCase] = [
        FilterCase("equals true", field("vip", "equals", true), [a, c]),
        FilterCase("equals false", field("vip", "equals", false), [b]),
        FilterCase("not_equals true includes no value", field("vip", "not_equals", true), [b, d, e, f]),
        FilterCase("not_equals false includes no value", field("vip", "not_equals", false), [a, c, d, e, f]),
        FilterCase("is_empty", field("vip", "is_empty"), [d, e, f]),
        FilterCase("is_not_empty", field("vip", "is_not_empty"), [a, b, c]),
    ]

    static let system: [FilterCase] = [
        FilterCase("email equals is case-insensitive", field("email", "equals", "ANA@Example.COM"), [a]),
        FilterCase("email contains", field("email", "contains", "@EXAMPLE.com"), everyone),
        FilterCase("email not_contains", field("email", "not_contains", "ana@"), [b, c, d, e, f]),
        FilterCase("email is_empty matches nobody", field("email", "is_empty"), []),
        FilterCase("name equals", field("name", "equals", "ana lima"), [a]),
        FilterCase("name contains", field("name", "contains", "BU"), [b]),
        FilterCase("name not_equals includes no name", field("name", "not_equals", "Budi"), [a, c, d, e, f]),
        FilterCase("name is_empty", field("name", "is_empty"), [d, e, f]),
        FilterCase("created_at less_than a timestamp", field("created_at", "less_than", "2026-05-27T12:00:00Z"), [a, b]),
        FilterCase("created_at equals a timestamp", field("created_at", "equals", "2026-05-27T12:00:00Z"), [c, d]),
        FilterCase(
            "created_at between timestamps", field("created_at", "between", ["2026-05-27T12:00:00Z", "2026-06-01T12:00:00Z"]),
            [c, d, e, f]),
        FilterCase("created_at equals a date", field("created_at", "equals", "2026-05-22"), [a, b]),
        FilterCase("created_at greater_than a date", field("created_at", "greater_than", "2026-05-22"), [c, d, e, f]),
        FilterCase("created_at is_not_empty", field("created_at", "is_not_empty"), everyone),
    ]

    @Test(arguments: text) func textOperators(_ c: FilterCase) async throws { try check(c, on: try await Self.book()) }
    @Test(arguments: number) func numberOperators(_ c: FilterCase) async throws { try check(c, on: try await Self.book()) }
    @Test(arguments: date) func dateOperators(_ c: FilterCase) async throws { try check(c, on: try await Self.book()) }
    @Test(arguments: boolean) func booleanOperators(_ c: FilterCase) async throws { try check(c, on: try await Self.book()) }
    @Test(arguments: system) func systemFields(_ c: FilterCase) async throws { try check(c, on: try await Self.book()) }

    @Test func contactsGetShowsTypedValuesAndClearingRemovesThem() async throws {
        let book = try await Self.book()
        let ana = try book.contact(Self.a)
        #expect(ana["name"] == "Ana Lima")
        #expect(ana["fields"] == ["city": "Jakarta", "ltv": 1000, "signup": "2026-01-31T00:00:00Z", "vip": true])
        #expect(try book.contact(Self.b)["fields"]?["ltv"] == 1000.5)
        #expect(try book.contact(Self.e)["fields"] == ["city": .null, "ltv": .null, "signup": .null, "vip": .null])

        // null and "" clear a value; keys not given are left alone.
        try await book.seed([["email": .string(Self.a), "name": .null, "fields": ["city": .null, "signup": ""]]])
        let cleared = try book.contact(Self.a)
        #expect(cleared["name"] == .null)
        #expect(cleared["fields"] == ["city": .null, "ltv": 1000, "signup": .null, "vip": true])
        #expect(try book.emails([field("city", "is_empty")]) == [Self.a, Self.e, Self.f])
        #expect(try book.emails([field("name", "is_empty")]) == [Self.a, Self.d, Self.e, Self.f])
    }

    @Test func aDateWithoutAZoneIsReadInTheConfiguredTimeZone() async throws {
        let book = try TestBook(timeZone: TimeZone(identifier: "Asia/Jakarta")!)  // UTC+7, no DST
        try await book.define("signup", "date")
        try await book.seed([
            ["email": "late@example.com", "fields": ["signup": "2026-01-31T16:59:59Z"]],  // 23:59:59 on the 31st in Jakarta
            ["email": "next@example.com", "fields": ["signup": "2026-01-31T17:00:00Z"]],  // 00:00 on 1 Feb in Jakarta
            ["email": "local@example.com", "fields": ["signup": "2026-01-31T08:00"]],  // no zone: Jakarta time
            ["email": "day@example.com", "fields": ["signup": "2026-01-31"]],
        ])
        #expect(try book.emails([field("signup", "equals", "2026-01-31")]) == ["late@example.com", "local@example.com", "day@example.com"])
        #expect(try book.emails([field("signup", "greater_than", "2026-01-31")]) == ["next@example.com"])
        #expect(try book.emails([field("signup", "equals", "2026-01-31T01:00:00Z")]) == ["local@example.com"])
        #expect(try book.contact("day@example.com")["fields"]?["signup"] == "2026-01-30T17:00:00Z")
    }

    @Test func definingFields() async throws {
        let book = try TestBook()
        #expect(try await book.define("city", "text") == ["name": "city", "type": "text", "system": false])
        // The same type again is a no-op; another type is a conflict; system fields cannot be redefined.
        #expect(try await book.define("city", "text") == ["name": "city", "type": "text", "system": false])
        let conflict = await #expect(throws: SegmentError.self) { try await book.define("city", "number") }
        #expect(conflict?.kind == .conflict)
        let system = await #expect(throws: SegmentError.self) { try await book.define("email", "text") }
        #expect(system?.kind == .conflict)
        let badType = await #expect(throws: SegmentError.self) { try await book.define("age", "integer") }
        #expect(badType?.kind == .invalidParams)
        #expect(badType?.path == "type")
        let list = try await book.engine.run(try book.method("fields.list"), params: [:])
        #expect(list.arrayValue?.compactMap { $0["name"]?.stringValue } == ["email", "name", "created_at", "city"])
    }
}
