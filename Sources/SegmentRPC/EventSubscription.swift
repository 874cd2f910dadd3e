import CoreMetrics
import LineRPC
import Logging
import SegmentCore
import SegmentEngine
import Synchronization
import WireJSON

/// Runs one `events.subscribe` stream: an `EventFeed` (the subscriber's cursor over the
/// durable log) written to the client as `events.event` notifications.
///
/// Each notification waits while the connection is not writable, so a slow reader slows its
/// own feed down and nothing piles up in the server: the feed holds one page of the log.
/// A subscriber that takes nothing for `timeout` while an event waits to be written ends with
/// -32004 naming the cursor to resume after; one whose next events were removed by retention
/// ends with -32001 naming the oldest cursor still kept. A cancelled stream (`rpc.cancel`,
/// shutdown) replies `{ended: "cancelled", last_cursor}`.
struct EventSubscription {
    let feed: EventFeed
    let timeout: Duration
    let request: RPCRequest
    let book: String
    /// Where the stream's delivered cursor is visible to the metrics.
    let subscribers: SubscriberRegistry
    /// Counts the events delivered.
    let delivered: Counter
    let logger: Logger

    /// What the delivery loop and its watchdog share.
    private final class Progress: Sendable {
        private struct State {
            /// The cursor of the last event written to the connection.
            var delivered: Int64
            /// Since when the current notification has been waiting to be written.
            var waitingSince: ContinuousClock.Instant?
        }
        private let state: Mutex<State>
        let handle: SubscriberRegistry.Handle

        init(after: Int64, handle: SubscriberRegistry.Handle) {
            state = Mutex(State(delivered: after))
            self.handle = handle
        }

        var delivered: Int64 { state.withLock { $0.delivered } }
        func writing() { state.withLock { $0.waitingSince = .now } }
        func wrote(_ cursor: Int64) {
            state.withLock {
                $0.delivered = cursor
                $0.waitingSince = nil
            }
            handle.delivered(through: cursor)
        }
        /// When the current write will have waited `timeout`; nil when no write is waiting.
        func stallDeadline(_ timeout: Duration) -> ContinuousClock.Instant? { state.withLock { $0.waitingSince.map { $0 + timeout } } }
    }

    private struct Stalled: Error {}

    func run(after: Int64) async throws -> JSONValue {
        let progress = Progress(after: after, handle: subscribers.open(after: after))
        defer { progress.handle.close() }
        let feed = self.feed.reporting(to: progress.handle), request = self.request, timeout = self.timeout, delivered = self.delivered
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var events = feed.makeAsyncIterator()
                    while let event = try await events.next() {
                        guard case .object(var params) = event.json else { continue }
                        params.removeValue(forKey: "id")
                        progress.writing()
                        // Throws (event not written) when cancelled while it waits.
                        try await request.notify("events.event", params)
                        progress.wrote(event.cursor)
                        delivered.increment()
                    }
                }
                group.addTask {
                    // The watchdog: ends the stream once one write has waited `timeout`.
                    while true {
                        let deadline = progress.stallDeadline(timeout) ?? .now + timeout
                        try await Task.sleep(until: deadline, clock: .continuous)
                        if let stalled = progress.stallDeadline(timeout), stalled <= .now { throw Stalled() }
                    }
                }
                // The first child to end ends both (the feed never ends by itself); the group
                // waits for the other, so `progress` is final once it returns.
                defer { group.cancelAll() }
                _ = try await group.next()
            }
        } catch is Stalled {
            let last = progress.delivered
            let seconds = timeout / .milliseconds(1) / 1_000
            logger.notice("subscriber dropped: it read nothing for the subscriber timeout", metadata: metadata(last))
            throw RPCError(
                code: -32004, type: "overloaded",
                message: "subscriber read nothing for \(Self.format(seconds)) s: its subscription ended (the connection stays open); subscribe again with after: \(last)",
                extra: ["last_cursor": .int(last)])
        } catch let pruned as EventsPruned {
            logger.notice("subscriber ended: its next events were pruned", metadata: metadata(pruned.lastDelivered))
            var extra: [String: JSONValue] = [
                "last_cursor": .int(pruned.lastDelivered), "resume_after": .int(pruned.prunedThrough),
            ]
            extra["oldest_cursor"] = pruned.oldestKept.map { .int($0) } ?? .null
            throw RPCError(code: -32001, type: "not_found", message: pruned.description, extra: extra)
        } catch let error as SegmentError {
            throw error.rpcError
        } catch {
            // Cancelled (rpc.cancel, disconnect or shutdown): the final reply says where to
            // resume. Any other failure while cancelled is the cancellation surfacing.
            guard error is CancellationError || Task.isCancelled else { throw error }
        }
        // Cancelled: by rpc.cancel, a disconnect, a drop of the book or the server's shutdown.
        logger.info("subscriber ended (cancelled or disconnected)", metadata: metadata(progress.delivered))
        return ["ended": "cancelled", "last_cursor": .int(progress.delivered)]
    }

    private func metadata(_ cursor: Int64) -> Logger.Metadata {
        ["book": "\(book)", "rpc.id": "\(request.id ?? .null)", "rpc.connection": "\(request.connection.id)", "events.cursor": "\(cursor)"]
    }

    /// `60`, `1.5`: seconds without a trailing `.0`.
    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int64(seconds)) : String(seconds)
    }
}
