import Logging
import SegmentCore
import WireJSON

extension Engine {
    /// How stale `last_used_at` may get before a use writes it again. Usage feeds a lint rule
    /// measured in days, so an hour's precision costs nothing and keeps counts write-free.
    static let usageGranularity: Double = 3_600

    /// Records that a segment was counted for a send, resolved, exported or used by a trigger.
    /// Writes at most once an hour per segment; a failure to record is logged, never thrown.
    public func markUsed(segment id: Int64) async {
        let now = self.now
        guard let segment = snapshot.segments[id], now - (segment.lastUsedAt ?? 0) >= Self.usageGranularity else { return }
        do {
            // Not a change of the book or of a definition: `version` stays (a count must not
            // make a client think the state moved).
            try await write(cause: "segments.use", bumpsVersion: false) { context in
                guard var s = context.book.segments[id] else { return }
                s.lastUsedAt = now
                try context.sql.execute("UPDATE segment SET last_used_at = ? WHERE id = ?", [.real(now), .integer(id)])
                context.book.setSegment(s)
            }
        } catch {
            logger.warning("could not record segment use", metadata: ["segment.id": "\(id)", "error": "\(error)"])
        }
    }
}
