import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// Readers work on an immutable snapshot while writes go on.
@Suite(.ownThreads) struct SnapshotTests {
    @Test func anOldSnapshotKeepsAnsweringForItsState() async throws {
        let book = try TestBook()
        try await book.seed((0..<10).map { ["email": .string("c\($0)@example.com"), "labels": ["vip"]] })
        let old = book.engine.snapshot
        let rule = try book.engine.compile(filters: [filter("label", "contains", "vip")], book: old)
        let before = book.engine.count(rule: rule, book: old)
        #expect(before.matched == 10)

        try await book.seed((10..<15).map { ["email": .string("c\($0)@example.com"), "labels": ["VIP"]] })
        try await book.seed([["email": "c0@example.com", "labels": []], ["email": "c1@example.com", "status": "unsubscribed"]])
        _ = try await book.engine.delete(emails: ["c2@example.com"])
        _ = try await book.engine.suppress(emails: ["c3@example.com"], reason: nil)

        #expect(book.engine.count(rule: rule, book: old) == before)
        #expect(book.engine.members(rule: rule, audience: .all, book: old).count == 10)
        #expect(book.engine.members(rule: rule, audience: .send, book: old).count == 10)
        #expect(old.contactCount == 10)
        #expect(book.engine.contact(email: "c0@example.com", in: old)?["labels"] == ["vip"])
        #expect(book.engine.contact(email: "c2@example.com", in: old) != nil)

        let now = book.engine.count(rule: rule)
        #expect(now.matched == 13)  // 15 − c0 (label removed) − c2 (deleted)
        #expect(now.sendable == 11)  // − c1 unsubscribed − c3 suppressed
        #expect(now.version == before.version + 4)
    }

    @Test func concurrentReadersNeverSeeHalfAWrite() async throws {
        let book = try TestBook()
        let engine = book.engine
        let batch = 50, batches = 20
        let rule = try engine.compile(filters: [filter("label", "contains", "wave")])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for b in 0..<batches {
                    let docs: [JSONValue] = (0..<batch).map { ["email": .string("w\(b)-\($0)@example.com"), "labels": ["wave"]] }
                    _ = try await engine.upsert(contacts: docs, atomic: true)
                }
            }
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<200 {
                        let snapshot = engine.snapshot
                        let count = engine.count(rule: rule, audience: .all, book: snapshot)
                        // A snapshot holds whole batches only, and its answers agree with its own size.
                        #expect(count.matched % batch == 0)
                        #expect(count.matched == snapshot.contactCount)
                        #expect(count.version == snapshot.version)
                        await Task.yield()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try book.count([filter("label", "contains", "wave")]).matched == batch * batches)
    }
}
