import SegmentCore

/// A subscriber's cursor over the durable event log: every event after `after`, oldest
/// first, then each new one as it commits — read from SQLite a page at a time, at the
/// subscriber's own pace.
///
/// There is no separate live queue: when the feed has read the whole log it waits on the
/// engine's `EventHub` until a newer cursor is published, then reads the log again from
/// where it stopped. Catching up and following live are the same loop, so no event is
/// skipped or repeated between the two, and a subscriber that falls behind holds one page
/// (`Engine.Configuration.subscriberPageSize` events) however far behind it is. The pages
/// are read on the store's read connections, never on the writer.
///
/// Throws `EventsPruned` when retention removed events after its cursor before it read them,
/// and `CancellationError` when its task is cancelled.
///
/// ```swift
/// for try await event in engine.eventFeed(after: lastSeen) { deliver(event) }
/// ```
public struct EventFeed: AsyncSequence, Sendable {
    public typealias Element = TriggerEvent
    let engine: Engine
    let after: Int64
    let triggers: Set<Int64>?
    /// Told how far the subscriber has caught up when there is nothing left to hand out
    /// (with a trigger filter, past the events it skipped).
    var progress: SubscriberRegistry.Handle?

    public func makeAsyncIterator() -> Iterator {
        Iterator(engine: engine, after: after, triggers: triggers, progress: progress)
    }

    /// This feed, reporting to `handle` each time it has read the whole log (so a filtered
    /// subscriber that is up to date shows no lag).
    public func reporting(to handle: SubscriberRegistry.Handle) -> EventFeed {
        var feed = self
        feed.progress = handle
        return feed
    }

    public struct Iterator: AsyncIteratorProtocol {
        let engine: Engine
        let triggers: Set<Int64>?
        let pageSize: Int
        /// The cursor of the last event handed out.
        public private(set) var last: Int64
        /// The log has been read through this cursor (ahead of `last` when a trigger filter
        /// skipped events, or while a page is being handed out).
        var scanned: Int64
        var page: [TriggerEvent] = []
        var index = 0
        let progress: SubscriberRegistry.Handle?

        init(engine: Engine, after: Int64, triggers: Set<Int64>?, progress: SubscriberRegistry.Handle?) {
            self.engine = engine
            self.triggers = triggers
            self.progress = progress
            self.pageSize = Swift.max(1, engine.configuration.subscriberPageSize)
            self.last = after
            self.scanned = after
        }

        public mutating func next() async throws -> TriggerEvent? {
            while true {
                if index < page.count {
                    let event = page[index]
                    index += 1
                    last = event.cursor
                    return event
                }
                try Task.checkCancellation()
                let read = try await engine.readEventPage(after: scanned, limit: pageSize, triggers: triggers, delivered: last)
                page = read.events
                index = 0
                scanned = read.through
                if page.isEmpty && read.atEnd {
                    // Everything handed out was taken before this call: caught up through `scanned`.
                    progress?.delivered(through: scanned)
                    await engine.hub.wait(beyond: scanned)
                }
            }
        }
    }
}

/// Events after a subscriber's cursor were removed by retention before it read them: it
/// cannot continue without a gap.
public struct EventsPruned: Error, Sendable, CustomStringConvertible {
    /// The last event the subscriber was handed.
    public let lastDelivered: Int64
    /// Every event up to this cursor was removed; subscribing with `after` = this continues
    /// with the oldest event kept.
    public let prunedThrough: Int64
    /// The oldest cursor still in the log (nil when retention removed every event).
    public let oldestKept: Int64?

    public var description: String {
        let oldest = oldestKept.map { "the oldest cursor still kept is \($0)" } ?? "no event is kept"
        return "events after cursor \(lastDelivered) were removed by retention (through \(prunedThrough)) before this subscriber read them; "
            + "\(oldest): subscribe again with after: \(prunedThrough) to continue from there"
    }
}

extension Engine {
    /// Every event after `after` (optionally for some triggers), from the log then live.
    public func eventFeed(after: Int64, triggers: Set<Int64>? = nil) -> EventFeed {
        EventFeed(engine: self, after: after, triggers: triggers)
    }

    /// The live-event signal subscribers wait on.
    public var eventHub: EventHub { hub }
}
