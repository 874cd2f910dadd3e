import SegmentCore

/// Re-checks the contacts a write touched against every trigger and appends each transition
/// to the event log, inside the write's own transaction.
struct TriggerEvaluator {
    let cause: String

    /// `base` is the book before the write: it still knows the email of a deleted contact.
    func evaluate(_ context: inout WriteContext, base: Book) throws -> [TriggerEvent] {
        guard !context.touched.isEmpty, !context.book.triggers.isEmpty else { return [] }
        var events: [TriggerEvent] = []
        let touched = context.touched
        let slots = touched.slots
        // A large write is cheaper to re-check by resolving each rule once (bitmap algebra)
        // than by testing every touched contact one by one.
        let bulk = slots.count >= Self.bulkThreshold
        for id in context.book.triggers.keys.sorted() {
            var trigger = context.book.triggers[id]!
            let changed: [Int]
            if bulk {
                let now = trigger.rule.resolve(in: context.book, at: context.now).intersection(touched)
                let was = trigger.members.intersection(touched)
                changed = now.subtracting(was).union(was.subtracting(now)).slots
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
                events.append(try append(trigger: trigger, email: email, type: now ? "enter" : "exit", context: context))
            }
            for chunk in chunks.sorted() { try Self.saveChunk(chunk, of: trigger, sql: context.sql) }
            context.book.triggers[id] = trigger
        }
        return events
    }

    /// Persists one 4,096-slot chunk of a trigger's baseline (an empty chunk has no row).
    static func saveChunk(_ chunk: Int, of trigger: Trigger, sql: any SQLExecutor) throws {
        if let bits = trigger.members.chunkBytes(chunk) {
            try sql.execute("INSERT OR REPLACE INTO trigger_baseline(trigger_id, chunk, bits) VALUES (?, ?, ?)",
                            [.integer(trigger.id), .integer(Int64(chunk)), .blob(bits)])
        } else {
            try sql.execute("DELETE FROM trigger_baseline WHERE trigger_id = ? AND chunk = ?", [.integer(trigger.id), .integer(Int64(chunk))])
        }
    }

    /// Touched contacts from which a rule is resolved whole rather than tested one by one.
    static let bulkThreshold = 256

    /// Appends one event and returns it with its cursor.
    func append(trigger: Trigger, email: String, type: String, context: WriteContext) throws -> TriggerEvent {
        try context.sql.execute(
            "INSERT INTO event(trigger_id, segment_id, email, type, at, cause) VALUES (?, ?, ?, ?, ?, ?)",
            [.integer(trigger.id), .integer(trigger.segmentID), .text(email), .text(type), .real(context.now), .text(cause)])
        var cursor: Int64 = 0
        cursor = context.sql.lastInsertRowID
        return TriggerEvent(
            cursor: cursor, trigger: trigger.id, segment: trigger.segmentID, email: email, type: type, at: context.now, cause: cause)
    }
}
