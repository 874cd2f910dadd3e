import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The product's five segment shapes on a hand-made book, with hand-picked members.
@Suite(.ownThreads) struct SegmentShapeTests {
    @Test(arguments: ShapesBook.shapes)
    func storedSegmentGivesTheHandPickedMembers(_ shape: ShapesBook.Shape) async throws {
        let book = try TestBook()
        try await ShapesBook.build(book)
        let segment = try await book.engine.createSegment(name: shape.name, description: "shape", filters: shape.filters)
        #expect(!segment.reviewNeeded, "the five dashboard dimensions without groups need no review")

        let stored = try book.engine.segment(id: segment.id)
        let snapshot = book.engine.snapshot
        let rule = try book.engine.compile(filters: stored.filters, book: snapshot)
        let members = Set(book.engine.members(rule: rule, audience: .all, book: snapshot).slots.map { snapshot.emails[$0] })
        let sendable = Set(book.engine.members(rule: rule, audience: .send, book: snapshot).slots.map { snapshot.emails[$0] })
        #expect(members == shape.members)
        #expect(sendable == shape.sendable)

        let count = try book.engine.count(segment: segment.id, audience: .send)
        #expect(count.matched == shape.members.count)
        #expect(count.sendable == shape.sendable.count)
        #expect(count.excluded.values.reduce(0, +) == shape.members.count - shape.sendable.count)
        #expect(count.version == snapshot.version)
        #expect(count.asOf == ShapesBook.now)
    }

    @Test func theExcludedBreakdownNamesWhyEachMatchIsNotSendable() async throws {
        let book = try TestBook()
        try await ShapesBook.build(book)
        let inactive = ShapesBook.shapes[2]
        let count = try book.count(inactive.filters)
        // tono unsubscribed, yoga pending, bayu hard bounce, wati active but suppressed.
        #expect(count.excluded == ["unsubscribed": 1, "pending": 1, "hard_bounce": 1, "suppressed": 1])
        #expect(count.json["size"] == 2)
        #expect(try book.count(inactive.filters, audience: .all).json["size"] == 6)
    }

    @Test func aSuppressedAddressIsNeverSendableEvenIfItBecomesAContactLater() async throws {
        let book = try TestBook()
        try await ShapesBook.build(book)
        _ = try await book.engine.suppress(emails: ["Late@Example.com"], reason: nil)
        try await book.seed([["email": "late@example.com", "labels": ["newsletter"]]])
        let readers = ShapesBook.shapes[0]
        #expect(try book.emails(readers.filters) == readers.members.union(["late@example.com"]))
        #expect(try book.emails(readers.filters, audience: .send) == readers.sendable)
        #expect(try book.contact("late@example.com")["suppressed"] == true)

        // Lifting the suppression makes both sendable again.
        #expect(try await book.engine.unsuppress(emails: ["late@EXAMPLE.com", "wati@example.com"]) == 2)
        #expect(try book.emails(readers.filters, audience: .send) == readers.members.union(["late@example.com"]))
        let check = try await book.engine.suppression(of: "wati@example.com")
        #expect(check["suppressed"] == false)
    }
}
