import Synchronization

/// The book's open `events.subscribe` streams and the cursor each has delivered, for the
/// metrics (`segmentd_subscribers`, `segmentd_subscriber_lag_events`).
public final class SubscriberRegistry: Sendable {
    private struct State {
        var delivered: [Int: Int64] = [:]
        var nextID = 0
    }
    private let state = Mutex(State())

    init() {}

    /// One open stream; `close()` (or its end) removes it.
    public final class Handle: Sendable {
        private let registry: SubscriberRegistry
        private let id: Int

        fileprivate init(registry: SubscriberRegistry, id: Int) {
            self.registry = registry
            self.id = id
        }

        /// Every event through `cursor` that the subscriber wants has been written to it.
        public func delivered(through cursor: Int64) {
            registry.state.withLock { state in
                guard let known = state.delivered[id] else { return }  // closed
                state.delivered[id] = max(known, cursor)
            }
        }

        public func close() { _ = registry.state.withLock { $0.delivered.removeValue(forKey: id) } }
    }

    /// Registers a stream that starts after `cursor`.
    public func open(after cursor: Int64) -> Handle {
        let id = state.withLock { state in
            state.nextID += 1
            state.delivered[state.nextID] = cursor
            return state.nextID
        }
        return Handle(registry: self, id: id)
    }

    /// The cursor each open stream has delivered through.
    public var deliveredCursors: [Int64] { state.withLock { Array($0.delivered.values) } }
}
