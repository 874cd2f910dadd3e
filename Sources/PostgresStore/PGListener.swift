import Dispatch
import NIOConcurrencyHelpers
import PostgresNIO
import SegmentCore

/// A LISTEN started by ``PGConnection/listen(_:onEnd:_:)``; `stop()` ends it (UNLISTEN).
public final class PGListener: Sendable {
    private let task: Task<Void, Never>
    /// Kept so the connection outlives its listener.
    let connection: PGConnection

    init(task: Task<Void, Never>, connection: PGConnection) {
        self.task = task
        self.connection = connection
    }

    public func stop() { task.cancel() }
}

/// The payloads of one channel's notifications, from ``PGConnection/notifications(on:_:)``.
public struct PGNotifications: AsyncSequence {
    public typealias Element = String
    let base: PostgresNotificationSequence
    let url: PostgresURL

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), url: url)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: PostgresNotificationSequence.AsyncIterator
        let url: PostgresURL

        public mutating func next() async throws -> String? {
            do {
                return try await base.next()?.payload
            } catch {
                throw PGErrors.map(error, url: url)
            }
        }
    }
}

extension PGConnection {
    /// LISTENs on `channel` and calls `onPayload` with each notification's payload, on a
    /// task of its own; returns once the LISTEN is in effect. `onEnd` is called when
    /// listening ends: nil after `stop()`, the error when the connection is lost.
    ///
    /// The channel is case-sensitive (postgres-nio sends `LISTEN "channel"`), as
    /// `pg_notify`'s is. Like the other synchronous calls this is for plain threads: it waits
    /// for a task on Swift's global executor. Async code uses ``notifications(on:_:)``.
    public func listen(
        _ channel: String, onEnd: (@Sendable (SegmentError?) -> Void)? = nil, _ onPayload: @escaping @Sendable (String) -> Void
    ) throws -> PGListener {
        try Self.checkChannel(channel)
        let started = StartSignal()
        let task = Task { [connection, url] in
            do {
                try await connection.listen(on: channel) { notifications in
                    started.signal(nil)
                    for try await notification in notifications { onPayload(notification.payload) }
                }
                onEnd?(nil)
            } catch {
                let mapped = PGErrors.map(error, url: url)
                let failure = mapped is CancellationError ? nil : (mapped as? SegmentError ?? SegmentError(.internal, "\(mapped)"))
                if !started.signal(failure) { onEnd?(failure) }
            }
        }
        if let failure = started.wait() {
            task.cancel()
            throw failure
        }
        return PGListener(task: task, connection: self)
    }

    /// LISTENs on `channel` for as long as `consume` runs (UNLISTEN after), handing it the
    /// payloads as an AsyncSequence.
    public func notifications<T>(on channel: String, _ consume: (PGNotifications) async throws -> T) async throws -> T {
        try Self.checkChannel(channel)
        do {
            return try await connection.listen(on: channel) { try await consume(PGNotifications(base: $0, url: url)) }
        } catch {
            throw PGErrors.map(error, url: url)
        }
    }

    /// postgres-nio quotes the channel in `LISTEN "…"` without escaping it.
    static func checkChannel(_ channel: String) throws {
        guard !channel.isEmpty, channel.utf8.count <= 63, !channel.contains("\""), !channel.contains("\0") else {
            throw SegmentError(.invalidParams, "LISTEN channel \"\(channel)\" must be 1 to 63 bytes without a double quote or NUL")
        }
    }
}

/// Lets `listen` wait, on its own thread, until the listening task has started or failed.
private final class StartSignal: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let outcome = NIOLockedValueBox<(signalled: Bool, failure: SegmentError?)>((false, nil))

    /// Records the first outcome only; returns whether this call was the first.
    @discardableResult
    func signal(_ failure: SegmentError?) -> Bool {
        let first = outcome.withLockedValue { state in
            guard !state.signalled else { return false }
            state = (true, failure)
            return true
        }
        if first { semaphore.signal() }
        return first
    }

    func wait() -> SegmentError? {
        semaphore.wait()
        return outcome.withLockedValue { $0.failure }
    }
}
