import Dispatch
import Synchronization

/// One connection of the store, made again when lost.
final class ConnectionSlot: Sendable {
    private let connection = Mutex<PGConnection?>(nil)

    var current: PGConnection? {
        get { connection.withLock { $0 } }
        set { connection.withLock { $0 = newValue } }
    }

    /// Forgets `pg` if it is still the current connection.
    func drop(_ pg: PGConnection) {
        connection.withLock { if $0 === pg { $0 = nil } }
    }

    /// Takes the current connection out of the slot.
    func takeCurrent() -> PGConnection? {
        connection.withLock { pg in
            defer { pg = nil }
            return pg
        }
    }

    func closeAll() {
        let pg = connection.withLock { pg in
            defer { pg = nil }
            return pg
        }
        pg?.close()
    }
}

/// Runs blocking work on a thread of Dispatch's, not the cooperative pool.
enum WorkerThread {
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// Wakes the follower loop when a notification arrives (or at its interval), and tells it
/// whether anything but this node's own writes was announced meanwhile.
final class ChangeSignal: Sendable {
    private struct State {
        /// Woken since the last wait: nothing yet (nil), own writes only (false), or anything
        /// else: another node's write, the interval, a restarted LISTEN (true).
        var pending: Bool?
        var waiters: [CheckedContinuation<Bool, Never>] = []
    }

    private let state = Mutex(State())

    /// Wakes the waiter; `own`: the notification announced this node's own write.
    func signal(own: Bool = false) {
        let (waiters, other) = state.withLock { state in
            let other = (state.pending ?? false) || !own
            let waiters = state.waiters
            state.waiters = []
            state.pending = waiters.isEmpty ? other : nil
            return (waiters, other)
        }
        for waiter in waiters { waiter.resume(returning: other) }
    }

    /// Returns true when something other than this node's own writes woke it.
    func wait(upTo interval: Duration) async -> Bool {
        let timer = Task { [weak self] in
            // Cancelled when the wait ends otherwise: then it must not signal.
            guard (try? await Task.sleep(for: interval)) != nil else { return }
            self?.signal()
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let ready = state.withLock { state -> Bool? in
                defer { state.pending = nil }
                if state.pending == nil { state.waiters.append(continuation) }
                return state.pending
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
