import SegmentCore

/// A subscriber's view of the event log: every event after a cursor, replayed from SQLite,
/// then live, with no gap and no duplicate between the two.
///
/// The live queue is registered before the replay starts, so an event committed during the
/// replay is either read by the replay or queued (or both, and the cursor drops the copy).
/// Iteration pulls the replay a page at a time, so a long replay never sits in memory. A
/// subscriber whose live queue overflows gets `EventHub.SubscriberTooSlow` and resumes from
/// its last cursor.
///
/// ```swift
/// for try await event in engine.eventFeed(after: lastSeen) { deliver(event) }
/// ```
public struct EventFeed: AsyncSequence, Sendable {
    public typealias Element = TriggerEvent
    let engine: Engine
    let after: Int64
    let triggers: Set<Int64>?
    static let pageSize = 500

    public func makeAsyncIterator() -> Iterator {
        Iterator(engine: engine, last: after, triggers: triggers, live: engine.subscribeLive(triggers: triggers).makeAsyncIterator())
    }

    public struct Iterator: AsyncIteratorProtocol {
        let engine: Engine
        /// The cursor of the last event handed out.
        public private(set) var last: Int64
        let triggers: Set<Int64>?
        var live: AsyncThrowingStream<TriggerEvent, any Error>.AsyncIterator
        var page: [TriggerEvent] = []
        var replaying = true

        init(engine: Engine, last: Int64, triggers: Set<Int64>?, live: AsyncThrowingStream<TriggerEvent, any Error>.AsyncIterator) {
            self.engine = engine
            self.last = last
            self.triggers = triggers
            self.live = live
        }

        public mutating func next() async throws -> TriggerEvent? {
            while true {
                if !page.isEmpty {
                    let event = page.removeFirst()
                    last = event.cursor
                    return event
                }
                if replaying {
                    page = try await engine.readEvents(after: last, limit: EventFeed.pageSize, triggers: triggers)
                    replaying = !page.isEmpty
                    continue
                }
                guard let event = try await live.next() else { return nil }
                if event.cursor > last {
                    last = event.cursor
                    return event
                }
            }
        }
    }
}

extension Engine {
    /// Every event after `after` (optionally for some triggers), replayed then live.
    public func eventFeed(after: Int64, triggers: Set<Int64>? = nil) -> EventFeed {
        EventFeed(engine: self, after: after, triggers: triggers)
    }
}
