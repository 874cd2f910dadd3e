import NIOCore
import Synchronization

/// A one-shot event many tasks can wait for (the server's "shutdown has begun").
///
/// Waiting is cancellation-aware: a cancelled waiter returns at once.
final class AsyncSignal: Sendable {
    private struct State {
        var fired = false
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    var isFired: Bool { state.withLock { $0.fired } }

    /// Fires the signal; returns `false` if it had already fired.
    @discardableResult
    func fire() -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
            guard !state.fired else { return nil }
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume() }
        return true
    }

    /// Returns when the signal fires or the calling task is cancelled.
    func wait() async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.fired || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}

/// Flushes what is queued on `channel`, then closes it. A peer that reads nothing gets
/// `within` to take it: then the close fails the pending writes, which ends the wait. (A
/// future's `get()` does not answer task cancellation, so ``withDeadline(_:_:)`` around it
/// would wait for ever.)
func flushAndClose(_ channel: any Channel, within: Duration) async {
    let closer = channel.eventLoop.scheduleTask(in: TimeAmount(within)) { channel.close(promise: nil) }
    _ = try? await channel.writeAndFlush(ByteBuffer()).get()
    closer.cancel()
    channel.close(promise: nil)
}

/// Runs `operation`, giving up after `timeout`: returns its value, or `nil` on timeout (the
/// operation's task is then cancelled and awaited, so it must answer cancellation).
func withDeadline<T: Sendable>(
    _ timeout: Duration,
    _ operation: @escaping @Sendable () async -> T
) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { await operation() }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
