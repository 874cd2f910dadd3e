import SegmentCore
import SegmentStore
import WireJSON

extension Engine {
    /// Creates a trigger on a segment. Its baseline is the segment's current membership:
    /// existing members fire `enter` now only when `includeExisting` is set.
    public func createTrigger(segment: Int64, onEnter: Bool, onExit: Bool, includeExisting: Bool) async throws -> Trigger {
        guard onEnter || onExit else { throw SegmentError.invalidParams(path: "on", "give at least one of enter, exit") }
        let registry = self.registry, time = self.time
        let trigger = try await write(cause: "triggers.create") { context in
            guard let seg = context.book.segments[segment] else { throw SegmentError.notFound("no segment with id \(segment)") }
            let rule = try registry.compile(filters: seg.filters, book: context.book, time: time)
            try context.sql.execute(
                "INSERT INTO trigger(segment_id, on_enter, on_exit, created_at) VALUES (?, ?, ?, ?)",
                [.integer(segment), .integer(onEnter ? 1 : 0), .integer(onExit ? 1 : 0), .real(context.now)])
            let id = context.sql.lastInsertRowID
            let members = rule.resolve(in: context.book, at: context.now)
            let trigger = Trigger(
                id: id, segmentID: segment, onEnter: onEnter, onExit: onExit, createdAt: context.now, rule: rule,
                members: includeExisting ? ContactSet() : members)
            try CoreSchema.saveBaseline(trigger.members, replacing: ContactSet(), trigger: id, sql: context.sql)
            context.book.triggers[id] = trigger
            if includeExisting {
                // Existing members enter through the ordinary evaluation, as if they had just matched.
                context.touched.formUnion(members)
            }
            return trigger
        }
        await markUsed(segment: segment)
        return snapshot.triggers[trigger.id] ?? trigger
    }

    /// Every trigger, by id.
    public func triggers() -> [Trigger] { snapshot.triggers.values.sorted { $0.id < $1.id } }

    /// Removes trigger `id` from the book and its row and baseline rows from the store; the
    /// trigger, or `nil` when there is none.
    static func dropTrigger(_ id: Int64, context: inout WriteContext) throws -> Trigger? {
        guard let trigger = context.book.triggers.removeValue(forKey: id) else { return nil }
        try CoreSchema.deleteBaseline(trigger.members, trigger: id, sql: context.sql)
        try context.sql.execute("DELETE FROM trigger WHERE id = ?", [.integer(id)])
        return trigger
    }

    /// Deletes a trigger and its baseline (its past events stay in the log).
    public func deleteTrigger(id: Int64) async throws -> Trigger {
        try await write(cause: "triggers.delete") { context in
            guard let trigger = try Self.dropTrigger(id, context: &context) else { throw SegmentError.notFound("no trigger with id \(id)") }
            return trigger
        }
    }

    /// Re-resolves the time-dependent triggers at the clock's now and records each transition
    /// with cause `clock`. Returns how many events it recorded. A tick with no transition
    /// writes nothing (it runs every minute: it must not count as a write in `version`).
    @discardableResult
    public func reevaluateClock() async throws -> Int {
        // A fleet node decides what is due on the latest state, not on what it has applied.
        try await catchUpBeforeValidating()
        let book = snapshot, now = self.now
        let due = book.triggers.values.contains { trigger in
            trigger.rule.isTimeDependent && trigger.rule.resolve(in: book, at: now) != trigger.members
        }
        guard due else { return 0 }
        // Time moved, not the book nor a definition: `version` stays (`as_of` tells the times apart).
        return try await write(cause: "clock", bumpsVersion: false) { context in
            var recorded = 0
            for trigger in context.book.triggers.values where trigger.rule.isTimeDependent {
                let now = trigger.rule.resolve(in: context.book, at: context.now)
                let entering = now.subtracting(trigger.members), leaving = trigger.members.subtracting(now)
                context.touched.formUnion(entering)
                context.touched.formUnion(leaving)
                // The evaluator records exactly these transitions (counted here, not by
                // comparing cursors, which a concurrent write would also move).
                if trigger.onEnter { recorded += entering.count }
                if trigger.onExit { recorded += leaving.count }
            }
            return recorded
        }
    }

    /// After a segment's rule changed: each of its triggers takes the new rule and the new
    /// membership as its baseline, silently. Returns the ids re-baselined.
    static func rebaseline(segment: Segment, context: inout WriteContext, registry: DimensionRegistry, time: ISOTime) throws -> [Int64] {
        var ids: [Int64] = []
        for (id, var trigger) in context.book.triggers where trigger.segmentID == segment.id {
            trigger.rule = try registry.compile(filters: segment.filters, book: context.book, time: time)
            let previous = trigger.members
            trigger.members = trigger.rule.resolve(in: context.book, at: context.now)
            try CoreSchema.saveBaseline(trigger.members, replacing: previous, trigger: id, sql: context.sql)
            context.book.triggers[id] = trigger
            ids.append(id)
        }
        return ids.sorted()
    }
}
