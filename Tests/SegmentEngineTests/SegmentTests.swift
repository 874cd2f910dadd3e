import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// Stored segments: create, get, update, delete, list, unique names, review_needed, validate, count.
@Suite(.ownThreads) struct SegmentTests {
    static let vip: JSONValue = [filter("label", "contains", "vip")]
    static let grouped: JSONValue = [filter("status", "equals", "active"), ["any": [filter("label", "contains", "vip"), filter("funnel", "equals", "customer")]]]

    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.seed([
            ["email": "a@example.com", "labels": ["vip"]],
            ["email": "b@example.com", "funnel": "customer"],
            ["email": "c@example.com", "labels": ["vip"], "status": "unsubscribed"],
        ])
        return book
    }

    @Test func createGetListUpdateDelete() async throws {
        let book = try await Self.book()
        let engine = book.engine
        let created = try await engine.createSegment(name: "  VIPs  ", description: "our best", filters: Self.vip)
        #expect(created.name == "VIPs")
        #expect(created.description == "our best")
        #expect(created.filters == Self.vip)
        #expect(!created.reviewNeeded)
        #expect(created.createdAt == TestBook.start)
        #expect(try engine.segment(id: created.id) == created)
        #expect(created.json["review_needed"] == false)

        book.clock.advance(seconds: 60)
        let second = try await engine.createSegment(name: "Grouped", filters: Self.grouped)
        #expect(second.reviewNeeded, "an any group needs review")
        #expect(second.id != created.id)
        #expect(engine.segments().map(\.name) == ["VIPs", "Grouped"])

        book.clock.advance(seconds: 60)
        let renamed = try await engine.updateSegment(id: created.id, name: "vips")  // its own name in another case
        #expect(renamed.name == "vips")
        #expect(renamed.filters == Self.vip)
        #expect(renamed.updatedAt == TestBook.start + 120)
        #expect(renamed.createdAt == TestBook.start)

        let regrouped = try await engine.updateSegment(id: created.id, filters: Self.grouped)
        #expect(regrouped.reviewNeeded)
        let signedOff = try await engine.updateSegment(id: created.id, reviewNeeded: false)
        #expect(!signedOff.reviewNeeded)
        #expect(signedOff.filters == Self.grouped)
        let plain = try await engine.updateSegment(id: second.id, filters: Self.vip)
        #expect(!plain.reviewNeeded)

        let badUpdate = await #expect(throws: SegmentError.self) {
            try await engine.updateSegment(id: second.id, filters: [filter("label", "contains", [])])
        }
        #expect(badUpdate?.path == "filters[0].value")
        #expect(try engine.segment(id: second.id).filters == Self.vip)

        let deleted = try await engine.deleteSegment(id: second.id)
        #expect(deleted.id == second.id)
        #expect(engine.segments().map(\.id) == [created.id])
        let gone = #expect(throws: SegmentError.self) { try engine.segment(id: second.id) }
        #expect(gone?.kind == .notFound)
        let goneCount = #expect(throws: SegmentError.self) { try engine.count(segment: second.id) }
        #expect(goneCount?.kind == .notFound)
        let again = await #expect(throws: SegmentError.self) { try await engine.deleteSegment(id: second.id) }
        #expect(again?.kind == .notFound)
        let missing = await #expect(throws: SegmentError.self) { try await engine.updateSegment(id: 999, name: "x") }
        #expect(missing?.kind == .notFound)
    }

    @Test func namesAreUniqueCaseInsensitively() async throws {
        let book = try await Self.book()
        let engine = book.engine
        let vips = try await engine.createSegment(name: "VIPs", filters: Self.vip)
        let other = try await engine.createSegment(name: "Customers", filters: [filter("funnel", "equals", "customer")])
        let version = engine.snapshot.version

        let duplicate = await #expect(throws: SegmentError.self) { try await engine.createSegment(name: "vips", filters: []) }
        #expect(duplicate?.kind == .conflict)
        let spaced = await #expect(throws: SegmentError.self) { try await engine.createSegment(name: " VIPS ", filters: []) }
        #expect(spaced?.kind == .conflict)
        let renamed = await #expect(throws: SegmentError.self) { try await engine.updateSegment(id: other.id, name: "vIPs") }
        #expect(renamed?.kind == .conflict)
        #expect(try engine.segment(id: other.id).name == "Customers")
        #expect(engine.segments().count == 2)
        #expect(engine.snapshot.version == version, "a refused write changes nothing")

        let empty = await #expect(throws: SegmentError.self) { try await engine.createSegment(name: "   ", filters: []) }
        #expect(empty?.kind == .invalidParams)
        #expect(empty?.path == "name")

        // Once deleted, the name is free again.
        _ = try await engine.deleteSegment(id: vips.id)
        #expect(try await engine.createSegment(name: "vips", filters: []).name == "vips")
    }

    @Test func validateReportsEveryErrorWithItsPath() async throws {
        let book = try await Self.book()
        let result = book.engine.validate(filters: [
            filter("status", "equals", "active"),
            filter("colour", "equals", "red"),
            filter("label", "contains", "vip"),
            field("city", "equals", "x"),
            ["any": []],
            engagement("open", "within_last", days(0)),
            ["any": [filter("label", "contains", "vip"), filter("funnel", "in", ["customer", "champion"])]],
            ["any": [filter("label", "contains", "vip")]],
        ])
        #expect(!result.valid)
        #expect(result.errors.map(\.path) == [
            "filters[1].dimension", "filters[3].field", "filters[4].any", "filters[5].value.days", "filters[6].any[1].value[1]",
        ])
        #expect(result.errors.allSatisfy { $0.kind == .invalidParams && !$0.message.isEmpty })
        #expect(result.reviewNeeded, "the valid any group at filters[7] needs review")

        let good = book.engine.validate(filters: Self.vip)
        #expect(good.valid && good.errors.isEmpty && !good.reviewNeeded)
        #expect(book.engine.validate(filters: Self.grouped).reviewNeeded)
        #expect(book.engine.validate(filters: [["any": [["any": [filter("label", "contains", "vip")]]]]]).reviewNeeded)
    }

    @Test func countOnAStoredSegmentFollowsTheBook() async throws {
        let book = try await Self.book()
        let segment = try await book.engine.createSegment(name: "VIPs", filters: Self.vip)
        let first = try book.engine.count(segment: segment.id)
        #expect(first == (try book.count(Self.vip)))
        #expect(first.matched == 2 && first.sendable == 1)
        #expect(first.excluded["unsubscribed"] == 1)

        // A segment stores its rule, never its membership.
        try await book.seed([["email": "d@example.com", "labels": ["VIP"]], ["email": "a@example.com", "remove_labels": ["vip"]]])
        let later = try book.engine.count(segment: segment.id)
        #expect(later.matched == 2 && later.sendable == 1)
        #expect(later.version > first.version)
        #expect(try book.emails(Self.vip) == ["c@example.com", "d@example.com"])
        #expect(try book.engine.count(segment: segment.id, audience: .all).json["size"] == 2)
    }
}
