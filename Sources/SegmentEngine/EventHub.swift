import SegmentCore
import Synchronization

/// Delivers committed trigger events to live subscribers, each through a bounded queue.
///
/// Events are published on the writer queue right after their commit, in cursor order. A
/// subscriber whose queue is full is finished with `SubscriberTooSlow`: it resumes from its
/// last cursor, and the durable log guarantees it misses nothing.
public final class EventHub: Sendable {
    public struct SubscriberTooSlow: Error {}

    private struct Subscriber {
        let continuation: AsyncThrowingStream<TriggerEvent, any Error>.Continuation
        let triggers: Set<Int64>?
    }

    private let subscribers = Mutex<[Int: Subscriber]>([:])
    private let nextID = Atomic<Int>(0)
    let queueLimit: Int

    init(queueLimit: Int) { self.queueLimit = queueLimit }

    /// Registers a subscriber. Everything published from now on is in the stream; everything
    /// committed before is in the log: a subscriber replays the log after registering.
    func subscribe(triggers: Set<Int64>?) -> AsyncThrowingStream<TriggerEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<TriggerEvent, any Error>.makeStream(bufferingPolicy: .bufferingOldest(queueLimit))
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[id] = Subscriber(continuation: continuation, triggers: triggers) }
        continuation.onTermination = { [weak self] _ in
            self?.subscribers.withLock { _ = $0.removeValue(forKey: id) }
        }
        return stream
    }

    func publish(_ events: [TriggerEvent]) {
        // Finishing a stream runs its onTermination, which takes the lock: finish outside it.
        let tooSlow = subscribers.withLock { subs -> [Subscriber] in
            var dropped: [Subscriber] = []
            for (id, sub) in subs {
                for event in events where sub.triggers?.contains(event.trigger) ?? true {
                    if case .dropped = sub.continuation.yield(event) {
                        dropped.append(sub)
                        subs.removeValue(forKey: id)
                        break
                    }
                }
            }
            return dropped
        }
        for sub in tooSlow { sub.continuation.finish(throwing: SubscriberTooSlow()) }
    }

    var subscriberCount: Int { subscribers.withLock { $0.count } }
}
