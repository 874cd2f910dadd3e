import Foundation
import SegmentCore
import SegmentEngine
import TestThreads
import Testing

/// Retention decides from memory whether anything may be due (the log's oldest time and its
/// cursor span), so a clock tick on a book with a young, short log costs no query. That
/// shortcut must never skip due work: not after a restart, not by count.
@Suite(.ownThreads) struct RetentionSummaryTests {
    @Test func nothingDueCostsNoQueryAndDueWorkIsFoundAfterARestart() async throws {
        let book = try await TriggerTests.retentionBook(seconds: 10 * 86_400, count: 4)
        defer { withExtendedLifetime(book) {} }
        let engine = book.engine
        var before = engine.storeOperations
        #expect(try await engine.pruneEvents() == 0)
        #expect(engine.storeOperations == before, "an empty log: not even a query")
        try await TriggerTests.fire(engine, 0..<3)  // cursors 1...3, young, fewer than 4
        before = engine.storeOperations
        #expect(try await engine.pruneEvents() == 0)
        #expect(engine.storeOperations == before, "a young, short log: not even a query")

        // A restart reads the log's extent from the database.
        try engine.close()
        var configuration = Engine.Configuration(databasePath: book.directory + "/t.sqlite", clock: book.clock)
        configuration.eventRetentionSeconds = 10 * 86_400
        configuration.eventRetentionCount = 4
        let reopened = try Engine(configuration: configuration, registry: TestBook.registry(), logger: TestBook.quietLogger)
        defer { try? reopened.close() }
        book.clock.advance(days: 11)
        #expect(try await reopened.pruneEvents() == 3, "old enough after the restart")
        before = reopened.storeOperations
        #expect(try await reopened.pruneEvents() == 0)
        #expect(reopened.storeOperations == before, "once pruned, nothing is due")

        // Young but too many: the count limit is due work too.
        try await TriggerTests.fire(reopened, 3..<9)  // cursors 4...9: six, two beyond 4
        #expect(try await reopened.pruneEvents() == 2)
        #expect(try await reopened.readEvents(after: 5, limit: 10).events.map(\.cursor) == [6, 7, 8, 9])
        before = reopened.storeOperations
        #expect(try await reopened.pruneEvents() == 0)
        #expect(reopened.storeOperations == before)
    }
}
