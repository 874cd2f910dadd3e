import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The label dimension: `contains` (one or all), `contains_any`, `not_contains`, case-insensitively,
/// and the label writes (replace, add, remove).
@Suite(.ownThreads) struct LabelDimensionTests {
    static let a = "a@example.com", b = "b@example.com", c = "c@example.com", d = "d@example.com", e = "e@example.com"

    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.seed([
            ["email": .string(a), "labels": ["VIP", "newsletter"]],
            ["email": .string(b), "labels": ["vip"]],
            ["email": .string(c), "labels": ["Newsletter", "beta"]],
            ["email": .string(d)],
            ["email": .string(e), "add_labels": ["beta"]],
        ])
        return book
    }

    static let cases: [FilterCase] = [
        FilterCase("contains one label", filter("label", "contains", "vip"), [a, b]),
        FilterCase("contains is case-insensitive", filter("label", "contains", "NewsLetter"), [a, c]),
        FilterCase("contains ignores surrounding spaces", filter("label", "contains", " vip "), [a, b]),
        FilterCase("contains a list means all of them", filter("label", "contains", ["vip", "NEWSLETTER"]), [a]),
        FilterCase("contains a one-item list", filter("label", "contains", ["Vip"]), [a, b]),
        FilterCase("contains an unknown label matches nobody", filter("label", "contains", "ghost"), []),
        FilterCase("contains a list with an unknown label matches nobody", filter("label", "contains", ["vip", "ghost"]), []),
        FilterCase("contains_any", filter("label", "contains_any", ["vip", "beta"]), [a, b, c, e]),
        FilterCase("contains_any with an unknown label", filter("label", "contains_any", ["ghost", "NEWSLETTER"]), [a, c]),
        FilterCase("not_contains includes contacts without labels", filter("label", "not_contains", "vip"), [c, d, e]),
        FilterCase("not_contains a list means none of them", filter("label", "not_contains", ["VIP", "beta"]), [d]),
        FilterCase("not_contains an unknown label matches everyone", filter("label", "not_contains", "ghost"), [a, b, c, d, e]),
        FilterCase(
            "contains and not_contains together", [filter("label", "contains", "newsletter"), filter("label", "not_contains", "beta")], [a]),
    ]

    @Test(arguments: cases)
    func operators(_ c: FilterCase) async throws {
        try check(c, on: try await Self.book())
    }

    @Test func replaceAddAndRemoveAreCaseInsensitiveAndKeepTheFirstSpelling() async throws {
        let book = try await Self.book()
        #expect(try book.contact(Self.a)["labels"] == ["newsletter", "VIP"], "labels listed alphabetically, whatever their case")
        try await book.seed([
            ["email": .string(Self.a), "add_labels": ["BETA"], "remove_labels": ["NEWSLETTER"]],
            ["email": .string(Self.b), "labels": []],
            // replace, then add, then remove: the removal wins over the addition.
            ["email": .string(Self.d), "labels": ["x"], "add_labels": ["y"], "remove_labels": ["Y"]],
        ])
        #expect(try book.contact(Self.a)["labels"] == ["beta", "VIP"])
        #expect(try book.contact(Self.b)["labels"] == [])
        #expect(try book.contact(Self.d)["labels"] == ["x"])
        #expect(try book.emails([filter("label", "contains", "vip")]) == [Self.a])
        #expect(try book.emails([filter("label", "contains", "beta")]) == [Self.a, Self.c, Self.e])
        #expect(try book.emails([filter("label", "not_contains", ["vip", "beta", "newsletter", "x"])]) == [Self.b])

        _ = try await book.engine.delete(emails: [Self.c])
        let list = try await book.engine.run(try book.method("labels.list"), params: [:])
        let counts = Dictionary(uniqueKeysWithValues: (list.arrayValue ?? []).map {
            ($0["name"]?.stringValue ?? "", $0["contacts"]?.intValue ?? -1)
        })
        #expect(counts == ["beta": 2, "newsletter": 0, "VIP": 1, "x": 1])
        #expect(list.arrayValue?.first?["last_added_at"] == "2026-06-01T12:00:00Z")
    }
}
