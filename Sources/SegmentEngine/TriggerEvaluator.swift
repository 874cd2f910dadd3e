import SegmentCore
import SegmentStore

/// Re-checks the contacts a write touched against every trigger and appends each transition
/// to the event log, inside the write's own transaction.
struct TriggerEvaluator {
    let cause: String

    /// `base` is the book before the write: it still knows the email of a deleted contact.
    func evaluate(_ context: inout WriteContext, base: Book) throws -> [TriggerEvent] {
        guard !context.touched.isEmpty, !context.book.triggers.isEmpty else { return [] }
        var pending: [TriggerEvent] = []
        let touched = context.touched
        // A large write is cheaper to re-check by resolving each rule once (bitmap algebra)
        // than by testing every touched contact one by one.
        let bulk = touched.count >= Self.bulkThreshold
        let touchedWords = bulk ? touched.nonZeroWordIndices : []
        let slots = bulk ? [] : touched.slots
        for id in context.book.triggers.keys.sorted() {
            var trigger = context.book.triggers[id]!
            let changed: [Int]
            if bulk {
                // Compared only on the words the write touched.
                let now = trigger.rule.resolve(in: context.book, at: context.now, within: touched)
                var found: [Int] = []
                for wi in touchedWords {
                    var diff = (now.word(at: wi) ^ trigger.members.word(at: wi)) & touched.word(at: wi)
                    while diff != 0 {
                        found.append(wi << 6 | diff.trailingZeroBitCount)
                        diff &= diff &- 1
                    }
                }
                changed = found
            } else {
                changed = slots.filter { trigger.members.contains($0) != trigger.rule.matches(slot: $0, in: context.book, at: context.now) }
            }
            guard !changed.isEmpty else { continue }
            var chunks: Set<Int> = []
            for slot in changed {
                let now = !trigger.members.contains(slot)
                trigger.members.update(slot, member: now)
                chunks.insert(slot / ContactSet.chunkSlots)
                guard now ? trigger.onEnter : trigger.onExit else { continue }
                let email = slot < context.book.emails.count && !context.book.emails[slot].isEmpty ? context.book.emails[slot] : base.emails[slot]
                pending.append(TriggerEvent(
                    cursor: 0, trigger: trigger.id, segment: trigger.segmentID, email: email, type: now ? "enter" : "exit",
                    at: context.now, cause: cause))
            }
            for chunk in chunks.sorted() { try CoreSchema.saveBaselineChunk(chunk, of: trigger.members, trigger: id, sql: context.sql) }
            context.book.triggers[id] = trigger
        }
        return try append(pending, sql: context.sql)
    }

    /// Touched contacts from which a rule is resolved whole rather than tested one by one.
    static let bulkThreshold = 256

    /// Events per INSERT statement: one statement (and one update of the AUTOINCREMENT
    /// counter) per row cost ~1.7 µs per event, most of a triggered write.
    static let rowsPerInsert = 100

    /// Appends `events` in order and returns them with their cursors. With one writer, the
    /// rows of one INSERT get consecutive cursors ending at the last inserted rowid.
    func append(_ events: [TriggerEvent], sql: any SQLExecutor) throws -> [TriggerEvent] {
        var stored = events
        var start = 0
        while start < stored.count {
            let end = min(start + Self.rowsPerInsert, stored.count)
            var arguments: [SQLValue] = []
            arguments.reserveCapacity((end - start) * 6)
            for e in stored[start..<end] {
                arguments += [.integer(e.trigger), .integer(e.segment), .text(e.email), .text(e.type), .real(e.at), .text(e.cause)]
            }
            let rows = Array(repeating: "(?, ?, ?, ?, ?, ?)", count: end - start).joined(separator: ", ")
            try sql.execute("INSERT INTO event(trigger_id, segment_id, email, type, at, cause) VALUES \(rows)", arguments)
            let last = sql.lastInsertRowID
            for i in start..<end { stored[i].cursor = last - Int64(end - 1 - i) }
            start = end
        }
        return stored
    }
}
