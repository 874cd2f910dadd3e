import SegmentCore
import Synchronization

/// Wakes subscribers when new trigger events are committed; it carries no events.
///
/// Events are durable before they are published: a subscriber reads them from the log at its
/// own pace (`EventFeed`), and when it has read everything it waits here until the newest
/// committed cursor moves past what it has read. The hub holds one number and one
/// continuation per waiting subscriber, so its memory does not depend on how far behind a
/// subscriber is or how many events a write produced.
///
/// `publish(through:)` runs on the writer queue right after each commit that appended events;
/// it takes a lock and resumes the waiters (it never waits for a subscriber).
public final class EventHub: Sendable {
    private struct State {
        /// The newest cursor published (every event up to it is committed and readable).
        var latest: Int64 = 0
        var waiters = ParkedWaiters()
    }

    private let state = Mutex(State())

    init() {}

    /// The newest cursor published so far (0 before the first commit with events since start).
    public var latest: Int64 { state.withLock { $0.latest } }

    /// How many subscribers are waiting for new events.
    public var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Records that every event up to `cursor` is committed and wakes every waiter.
    func publish(through cursor: Int64) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard cursor > state.latest else { return [] }
            state.latest = cursor
            return state.waiters.takeAll()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once an event after `cursor` has been published, or when the calling task is
    /// cancelled (the caller checks which).
    ///
    /// A subscriber calls this after reading the log through `cursor`. An event committed
    /// after that read is published after it too, so either `latest` already exceeds
    /// `cursor` here or the publish wakes this waiter: no event can slip between the read
    /// and the wait.
    func wait(beyond cursor: Int64) async { await parkedWait(for: cursor) }
}

extension EventHub: ParkingLot {
    func waiterID() -> Int { state.withLock { $0.waiters.newID() } }

    /// Waits for an event after cursor `condition`.
    func park(_ id: Int, _ continuation: CheckedContinuation<Void, Never>, unlessMet cursor: Int64) -> Bool {
        state.withLock { state in
            guard !Task.isCancelled, state.latest <= cursor else { return false }
            state.waiters.park(id, continuation)
            return true
        }
    }

    func unpark(_ id: Int) -> CheckedContinuation<Void, Never>? { state.withLock { $0.waiters.unpark(id) } }
}
