import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// `segments.update` with `dry_run: true` (the engine's `previewSegmentUpdate`): who an edit
/// would add, remove and keep, computed from the contacts' own data here, and nothing saved.
@Suite(.ownThreads) struct UpdatePreviewTests {
    /// 200 contacts: every 3rd is vip, every 4th a customer, every 7th unsubscribed.
    static func book() async throws -> (TestBook, Int64) {
        let book = try TestBook()
        try await book.seed((0..<200).map { i in
            var c: [String: JSONValue] = ["email": .string("p\(i)@example.com")]
            if i % 3 == 0 { c["labels"] = ["vip"] }
            if i % 4 == 0 { c["funnel"] = "customer" }
            if i % 7 == 0 { c["status"] = "unsubscribed" }
            return .object(c)
        })
        let segment = try await book.engine.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip")])
        return (book, segment.id)
    }

    /// The expected groups, from the seeding rule above: old rule vip, new rule customer.
    static func expected(audience: Audience) -> (added: [String], removed: [String], kept: [String]) {
        let members = (0..<200).filter { audience == .all || $0 % 7 != 0 }
        let old = Set(members.filter { $0 % 3 == 0 }), new = Set(members.filter { $0 % 4 == 0 })
        func emails(_ set: Set<Int>) -> [String] { set.sorted().map { "p\($0)@example.com" } }
        return (emails(new.subtracting(old)), emails(old.subtracting(new)), emails(old.intersection(new)))
    }

    @Test(arguments: [Audience.send, .all])
    func addedRemovedAndKeptAreExactAndNothingIsSaved(_ audience: Audience) async throws {
        let (book, id) = try await Self.book()
        let engine = book.engine
        let stored = try engine.segment(id: id)
        let versionBefore = engine.snapshot.version
        let customers: JSONValue = [filter("funnel", "equals", "customer")]

        let preview = try await engine.previewSegmentUpdate(id: id, name: "Customers", filters: customers, audience: audience)
        let want = Self.expected(audience: audience)
        #expect(preview.added.count == want.added.count)
        #expect(preview.removed.count == want.removed.count)
        #expect(preview.kept.count == want.kept.count)
        #expect(preview.samples.added == Array(want.added.prefix(10)))
        #expect(preview.samples.removed == Array(want.removed.prefix(10)))
        #expect(preview.samples.kept == Array(want.kept.prefix(10)))
        #expect(preview.version == versionBefore)
        #expect(preview.segment.name == "Customers" && preview.segment.filters == customers)
        #expect(preview.json["added"]?["count"]?.intValue == Int64(want.added.count))

        // Nothing saved: the stored segment, the version, and the real update still to come.
        #expect(try engine.segment(id: id) == stored)
        #expect(engine.snapshot.version == versionBefore)
        let updated = try await engine.updateSegment(id: id, filters: customers)
        let after = engine.count(rule: try engine.compile(filters: updated.filters), audience: audience)
        #expect((audience == .send ? after.sendable : after.matched) == want.added.count + want.kept.count)
    }

    @Test func withoutNewFiltersEveryMemberIsKept() async throws {
        let (book, id) = try await Self.book()
        let preview = try await book.engine.previewSegmentUpdate(id: id, description: "renamed only")
        let vips = (0..<200).filter { $0 % 3 == 0 && $0 % 7 != 0 }
        #expect(preview.added.isEmpty && preview.removed.isEmpty)
        #expect(preview.kept.count == vips.count)
        #expect(preview.segment.description == "renamed only")
    }

    @Test func theUpdatesOwnErrorsComeFirst() async throws {
        let (book, id) = try await Self.book()
        let engine = book.engine
        _ = try await engine.createSegment(name: "Taken", filters: [filter("label", "contains", "x")])
        let conflict = await #expect(throws: SegmentError.self) { try await engine.previewSegmentUpdate(id: id, name: "taken") }
        #expect(conflict?.message.contains("already exists") == true)
        let missing = await #expect(throws: SegmentError.self) { try await engine.previewSegmentUpdate(id: 999) }
        #expect(missing?.message == "no segment with id 999")
        let bad = await #expect(throws: SegmentError.self) {
            try await engine.previewSegmentUpdate(id: id, filters: [filter("label", "contains", [])])
        }
        #expect(bad?.path == "filters[0].value")
    }
}
