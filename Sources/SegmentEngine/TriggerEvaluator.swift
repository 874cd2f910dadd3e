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
            // `changed` ascends, so the chunks to persist are its distinct consecutive chunk numbers.
            var chunks: [Int] = []
            for slot in changed {
                let now = !trigger.members.contains(slot)
                trigger.members.update(slot, member: now)
                if chunks.last != slot / ContactSet.chunkSlots { chunks.append(slot / ContactSet.chunkSlots) }
                guard now ? trigger.onEnter : trigger.onExit else { continue }
                let email = slot < context.book.emails.count && !context.book.emails[slot].isEmpty ? context.book.emails[slot] : base.emails[slot]
                pending.append(TriggerEvent(
                    cursor: 0, trigger: trigger.id, segment: trigger.segmentID, email: email, type: now ? "enter" : "exit",
                    at: context.now, cause: cause))
            }
            for chunk in chunks { try CoreSchema.saveBaselineChunk(chunk, of: trigger.members, trigger: id, sql: context.sql) }
            context.book.triggers[id] = trigger
        }
        return try append(pending, sql: context.sql)
    }

    /// Touched contacts from which a rule is resolved whole rather than tested one by one.
    static let bulkThreshold = 256

    /// Appends `events` in order and returns them with their cursors (their rowids), a
    /// hundred rows per statement.
    func append(_ events: [TriggerEvent], sql: any SQLExecutor) throws -> [TriggerEvent] {
        var stored = events
        var rows = RowBatch("INSERT INTO event(trigger_id, segment_id, email, type, at, cause)", width: 6)
        var firstWaiting = 0
        func assign(_ cursors: ClosedRange<Int64>?) {
            guard let cursors else { return }
            for (i, cursor) in zip(firstWaiting..., cursors) { stored[i].cursor = cursor }
            firstWaiting += cursors.count
        }
        for e in events {
            rows.append(.integer(e.trigger))
            rows.append(.integer(e.segment))
            rows.append(.text(e.email))
            rows.append(.text(e.type))
            rows.append(.real(e.at))
            rows.append(.text(e.cause))
            assign(try rows.endRow(sql))
        }
        assign(try rows.flush(sql))
        return stored
    }
}
