import SegmentCore
import SegmentStore
import Synchronization
import WireJSON

extension Engine {
    /// The cursor of the newest event (0 when the log is empty).
    public func lastCursor() async throws -> Int64 {
        try await store.read { sql in try Self.newestCursor(sql) }
    }

    /// The newest cursor ever given, 0 for none: the newest event's, or the last one retention
    /// removed when it removed them all (only retention deletes events, and a rolled-back
    /// insert gives back its cursors in SQLite and PostgreSQL alike under one writer).
    static func newestCursor(_ sql: any SQLExecutor) throws -> Int64 {
        var last: Int64 = 0
        try sql.forEachRow("SELECT MAX(cursor) FROM event", []) { last = $0[0].int64 ?? 0 }
        return max(last, try prunedThrough(sql))
    }

    /// Retention removed every event up to this cursor (0: none yet).
    static func prunedThrough(_ sql: any SQLExecutor) throws -> Int64 {
        var pruned: Int64 = 0
        try sql.forEachRow("SELECT value FROM meta WHERE key = 'events_pruned_through'", []) { pruned = $0[0].int64 ?? 0 }
        return pruned
    }

    /// The columns `event(row:)` reads, in order.
    static let eventColumns = "SELECT cursor, trigger_id, segment_id, email, type, at, cause FROM event"

    /// An event from a row of `eventColumns`.
    static func event(row: [SQLValue]) -> TriggerEvent {
        TriggerEvent(
            cursor: row[0].int64 ?? 0, trigger: row[1].int64 ?? 0, segment: row[2].int64 ?? 0, email: row[3].string ?? "",
            type: row[4].string ?? "", at: row[5].double ?? 0, cause: row[6].string ?? "")
    }

    /// Refuses a cursor from the future or from before the retention horizon.
    public func checkCursor(_ after: Int64) async throws {
        _ = try await store.read { sql in try Self.checkCursor(after, sql) }
    }

    /// The cursor check on one read transaction, so a prune cannot slip in between the check
    /// and the read that relies on it (that would be a silent gap).
    /// Returns the newest cursor.
    @discardableResult
    static func checkCursor(_ after: Int64, _ sql: any SQLExecutor) throws -> Int64 {
        let last = try newestCursor(sql)
        guard after <= last else {
            throw SegmentError(
                .invalidParams, "cursor \(after) is in the future: the newest event is \(last)", path: "after",
                details: ["newest_cursor": .int(last)])
        }
        let pruned = try prunedThrough(sql)
        guard after >= pruned else {
            throw SegmentError(
                .invalidParams,
                "cursor \(after) is older than the oldest kept event: events up to \(pruned) were pruned by retention; resume from \(pruned)",
                path: "after", details: ["resume_after": .int(pruned)])
        }
        return last
    }

    /// Events after `after`, oldest first, at most `limit`, optionally for some triggers only;
    /// and the newest cursor in the log as read.
    public func readEvents(after: Int64, limit: Int, triggers: Set<Int64>? = nil) async throws -> (events: [TriggerEvent], newest: Int64) {
        try await store.read { sql in
            let newest = try Self.checkCursor(after, sql)
            var events: [TriggerEvent] = []
            var cursor = after
            // Pages over the log so a trigger filter never loads more than `limit` rows at once.
            while events.count < limit {
                var page = 0
                try sql.forEachRow(
                    Self.eventColumns + " WHERE cursor > ? ORDER BY cursor LIMIT ?", [.integer(cursor), .integer(Int64(limit))]
                ) { row in
                    page += 1
                    let event = Self.event(row: row)
                    cursor = event.cursor
                    if events.count < limit, triggers?.contains(event.trigger) ?? true { events.append(event) }
                }
                if page < limit { break }
            }
            return (events, newest)
        }
    }

    /// One page of a subscriber's read through the log (see `EventFeed`).
    struct EventPage: Sendable {
        /// Events after the cursor asked for, oldest first, matching the trigger filter.
        var events: [TriggerEvent]
        /// The log was read through this cursor (the last event returned, or further when a
        /// filter skipped events); the next page starts after it.
        var through: Int64
        /// Whether the read reached the newest committed event.
        var atEnd: Bool
    }

    /// Reads at most `limit` events after `after` on a read connection: a range scan of the
    /// log's rowid (`cursor`), in one read transaction with the retention check, so a prune
    /// can never open a silent gap. With a trigger filter it scans at most `8 × limit` rows,
    /// so a filter that matches little still returns promptly (`through` says how far it got).
    /// Throws `EventsPruned` when events after `after` were removed by retention
    /// (`delivered` is what the subscriber was last handed, for the message).
    func readEventPage(after: Int64, limit: Int, triggers: Set<Int64>?, delivered: Int64) async throws -> EventPage {
        try await store.read { sql in
            let pruned = try Self.prunedThrough(sql)
            if after < pruned {
                var oldest: Int64?
                try sql.forEachRow("SELECT MIN(cursor) FROM event", []) { oldest = $0[0].int64 }
                throw EventsPruned(lastDelivered: delivered, prunedThrough: pruned, oldestKept: oldest)
            }
            try Self.checkCursor(after, sql)
            let scanLimit = triggers == nil ? limit : limit * 8
            var page = EventPage(events: [], through: after, atEnd: true)
            page.events.reserveCapacity(min(limit, 1_024))
            var rows = 0
            try sql.forEachRow(
                Self.eventColumns + " WHERE cursor > ? ORDER BY cursor LIMIT ?", [.integer(after), .integer(Int64(scanLimit))]
            ) { row in
                rows += 1
                guard page.events.count < limit else {
                    page.atEnd = false  // full: the rows after the last event are read again next time
                    return
                }
                let event = Self.event(row: row)
                page.through = event.cursor
                guard triggers?.contains(event.trigger) ?? true else { return }
                page.events.append(event)
            }
            if rows == scanLimit { page.atEnd = false }
            return page
        }
    }

    /// Prunes events older than the retention age or beyond the retention count; returns how
    /// many were removed.
    @discardableResult
    public func pruneEvents() async throws -> Int {
        try await pruneChanges()
        let horizon = now - configuration.eventRetentionSeconds
        let keep = Int64(configuration.eventRetentionCount)
        // Usually nothing is due: then nothing is read or written (a tick on a book whose log
        // is young and short costs a lock and two comparisons, not a query).
        guard eventLog.withLock({ $0.pruneMayBeDue(horizon: horizon, keep: keep) }) else { return 0 }
        guard try await store.read({ sql in try Self.pruneThrough(horizon: horizon, keep: keep, sql) }) > 0 else { return 0 }
        // Events are not the Contact Book nor a definition: `version` stays.
        let (removed, _) = try await write(
            cause: "retention", bumpsVersion: false,
            // The log's new extent replaces the old one only once the deletion is committed.
            onCommit: { [self] (_, log: EventLogSummary?) in if let log { self.eventLog.withLock { $0 = log } } }
        ) { context -> (Int, EventLogSummary?) in
            let through = try Self.pruneThrough(horizon: horizon, keep: keep, context.sql)
            guard through > 0 else { return (0, nil) }
            var removed = 0
            try context.sql.forEachRow("SELECT COUNT(*) FROM event WHERE cursor <= ?", [.integer(through)]) { removed = Int($0[0].int64 ?? 0) }
            try context.sql.execute("DELETE FROM event WHERE cursor <= ?", [.integer(through)])
            context.prunedEvents = true
            try context.sql.execute(
                "INSERT INTO meta(key, value) VALUES ('events_pruned_through', ?) ON CONFLICT (key) DO UPDATE SET value = CASE WHEN excluded.value > meta.value THEN excluded.value ELSE meta.value END",
                [.integer(through)])
            return (removed, try EventLogSummary(context.sql))
        }
        return removed
    }

    /// The newest cursor that retention removes (0: nothing to prune).
    ///
    /// Retention removes a prefix of the log: events older than the horizon up to the first
    /// one that is not (events are appended in time order, so with a steady clock that is all
    /// of them; a clock stepped back keeps an old event a little longer, never drops a young
    /// one), and beyond that whatever exceeds the count. The scan from the oldest event stops
    /// at the first young one, so it reads only what is about to go.
    static func pruneThrough(horizon: Double, keep: Int64, _ sql: any SQLExecutor) throws -> Int64 {
        let last = try newestCursor(sql)
        var oldest: Int64?
        try sql.forEachRow("SELECT MIN(cursor) FROM event", []) { oldest = $0[0].int64 }
        guard let oldest else { return 0 }
        var firstYoung: Int64?
        try sql.forEachRow("SELECT cursor FROM event WHERE at >= ? ORDER BY cursor LIMIT 1", [.real(horizon)]) { firstYoung = $0[0].int64 }
        let through = max(firstYoung.map { $0 - 1 } ?? last, last - keep)
        return through >= oldest ? through : 0
    }
}

/// What retention needs to know of a book's event log without a query: the oldest event's time
/// and the cursors' span. Kept in memory by the engine (read at start, moved by each commit
/// with events and by each prune), so a clock tick skips the books with nothing to prune.
struct EventLogSummary: Sendable {
    /// The earliest `at` in the log (nil: empty).
    var oldestAt: Double?
    var oldestCursor: Int64?
    var newestCursor: Int64 = 0

    init() {}

    init(_ sql: any SQLExecutor) throws {
        try sql.forEachRow("SELECT MIN(at), MIN(cursor), MAX(cursor) FROM event", []) { row in
            oldestAt = row[0].double
            oldestCursor = row[1].int64
            newestCursor = row[2].int64 ?? 0
        }
    }

    /// After a commit that appended `events` (in cursor order).
    mutating func appended(_ events: [TriggerEvent]) {
        guard let first = events.first, let last = events.last else { return }
        if oldestCursor == nil { oldestCursor = first.cursor }
        let earliest = events.lazy.map(\.at).min() ?? first.at
        oldestAt = min(oldestAt ?? earliest, earliest)
        newestCursor = max(newestCursor, last.cursor)
    }

    /// Whether some event may be older than `horizon` or beyond the newest `keep`: false
    /// means retention has certainly nothing to do.
    func pruneMayBeDue(horizon: Double, keep: Int64) -> Bool {
        guard let oldestAt, let oldestCursor else { return false }
        return oldestAt < horizon || newestCursor - oldestCursor + 1 > keep
    }
}
