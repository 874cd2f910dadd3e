import SegmentCore
import SegmentStore
import WireJSON

extension Engine {
    /// Persists the segments a correction rewrote (`WriteContext.rewrite(segment:)`) and gives
    /// their triggers the rule as it now compiles. Baselines are kept, not re-taken: where the
    /// new rule answers the same (a plain rename) nothing fires; where it answers differently
    /// (a label merged into one some contacts already carried) those contacts are re-checked
    /// like any contact the write touched, so they enter or leave exactly as after any other
    /// write. A trigger whose rule no longer compiles (its segment names a field deleted with
    /// `force`) is deleted: it could never be evaluated again, nor loaded at the next start.
    func applyRewrittenSegments(_ context: inout WriteContext) throws {
        guard !context.rewrittenSegments.isEmpty else { return }
        var recompile: [Int64] = []
        for id in context.rewrittenSegments {
            guard let segment = context.book.segments[id] else { continue }
            try context.sql.execute(
                "UPDATE segment SET filters = ?, review_needed = ?, updated_at = ? WHERE id = ?",
                [.text(segment.filters.serialized()), .integer(segment.reviewNeeded ? 1 : 0), .real(segment.updatedAt), .integer(id)])
            recompile.append(id)
        }
        // A segment that contains a rewritten one (a segment filter) compiled its rule in:
        // its triggers take the rule as it now compiles too.
        for id in context.rewrittenSegments {
            for referrer in Segment.referrers(of: id, in: context.book) where !recompile.contains(referrer.id) { recompile.append(referrer.id) }
        }
        for id in recompile {
            guard let segment = context.book.segments[id] else { continue }
            for (triggerID, var trigger) in context.book.triggers where trigger.segmentID == id {
                guard let rule = try? registry.compile(filters: segment.filters, book: context.book, time: time) else {
                    _ = try Self.dropTrigger(triggerID, context: &context)
                    continue
                }
                trigger.rule = rule
                let now = rule.resolve(in: context.book, at: context.now)
                context.touched.formUnion(now.subtracting(trigger.members))
                context.touched.formUnion(trigger.members.subtracting(now))
                context.book.triggers[triggerID] = trigger
            }
        }
    }
}
