import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import Synchronization
import Testing
import TestThreads
import WireJSON

/// What a client needs to resume a subscription exactly: cursors as data, not prose, and a
/// shutdown that ends subscriptions at once with their last cursor.
@Suite(.ownThreads) struct SubscriptionResumeTests {
    static func book(_ server: TestServer, events: Int) async throws -> RPCClient {
        let client = try await server.client()
        let segment = try await client.call("segments.create", ["name": "All x", "filters": [["dimension": "label", "op": "contains", "value": "x"]]])
        _ = try await client.call("triggers.create", ["segment": try #require(segment["id"])])
        _ = try await client.call("contacts.upsert", ["contacts": .array((0..<events).map { ["email": .string("r\($0)@example.com"), "labels": ["x"]] })])
        return client
    }

    /// `events.read` says the newest cursor (a live-only subscriber starts after it), and
    /// refused cursors carry where to go on as `data` members.
    @Test func cursorsComeAsData() async throws {
        let server = try await TestServer.start { $0.eventRetentionCount = 5 }
        let client = try await Self.book(server, events: 3)
        let read = try await client.call("events.read", ["after": 1, "limit": 1])
        #expect(read["newest_cursor"] == 3 && read["next"] == 2)
        let future = await #expect(throws: RPCError.self) { try await client.call("events.read", ["after": 9]) }
        #expect(future?.data?["newest_cursor"] == 3 && future?.data?["path"] == "after")
        // Retention keeps 5: after more events, cursor 0 is behind what was pruned.
        _ = try await client.call("contacts.upsert", ["contacts": .array((3..<10).map { ["email": .string("r\($0)@example.com"), "labels": ["x"]] })])
        server.clock.advance(seconds: 1)
        _ = try await server.app.catalog.defaultEngine().pruneEvents()
        let old = await #expect(throws: RPCError.self) { try await client.call("events.subscribe", ["after": 0]) { _, _ in } }
        let resume = try #require(old?.data?["resume_after"]?.intValue)
        #expect(resume == 5, "\(String(describing: old))")
        // Resuming where it says works.
        #expect(try await client.call("events.read", ["after": .int(resume)])["events"]?.arrayValue?.count == 5)
        try await client.close()
        try await server.stop()
    }

    /// SIGTERM's graceful shutdown ends a subscription at once with `{ended, last_cursor}`:
    /// it does not hold the drain (60 s here) as a request in flight would.
    @Test func shutdownEndsSubscriptionsAtOnce() async throws {
        let server = try await TestServer.start { $0.drainTimeout = .seconds(60) }
        let client = try await Self.book(server, events: 4)
        let final = Mutex<JSONValue?>(nil)
        let delivered = Mutex(0)
        let subscription = Task {
            let result = try await client.call("events.subscribe", ["after": 0]) { _, _ in delivered.withLock { $0 += 1 } }
            final.withLock { $0 = result }
        }
        #expect(await waitUntil(seconds: 30) { delivered.withLock { $0 } == 4 })
        let stopping = Task { try await server.stop() }
        #expect(await waitUntil(seconds: 30) { final.withLock { $0 } != nil }, "the subscription ended long before the 60 s drain")
        #expect(final.withLock { $0 } == ["ended": "cancelled", "last_cursor": 4])
        _ = await subscription.result
        try await stopping.value
    }

    /// A subscriber that stopped reading cannot hold the shutdown either: its connection is
    /// closed once the other requests are done (it resumes from its stored cursor).
    @Test func aStalledSubscriberDoesNotHoldTheShutdown() async throws {
        let server = try await TestServer.start {
            $0.drainTimeout = .seconds(60)
            $0.subscriberTimeout = .seconds(120)
        }
        let client = try await Self.book(server, events: 3_000)
        let stalled = try RawSocket(path: server.socketPath)
        defer { stalled.close() }
        stalled.send(#"{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":{"after":0}}"#)
        // Its socket fills and the stream waits for it to read.
        #expect(await waitUntil(seconds: 30) {
            let cursors = server.app.engine.subscribers.deliveredCursors
            return cursors.count == 1 && cursors[0] > 0
        })
        try await Task.sleep(for: .milliseconds(200))
        let sent = server.app.engine.subscribers.deliveredCursors.first ?? 0
        #expect(sent < 3_000, "the subscriber stalled (\(sent) of 3000 events written)")
        try await client.close()
        let stopped = Mutex(false)
        let stopping = Task {
            try await server.stop()
            stopped.withLock { $0 = true }
        }
        let ended = await waitUntil(seconds: 30) { stopped.withLock { $0 } }
        #expect(ended, "the shutdown ended long before the 60 s drain")
        if ended { try await stopping.value }
    }

    /// A stream whose client stopped reading is cancelled when the drain runs out, and the
    /// connection closed: the shutdown ends (it used to wait for ever on a flush that could
    /// not complete).
    @Test func aStalledStreamDoesNotHoldTheShutdownForever() async throws {
        let server = try await TestServer.start { $0.drainTimeout = .seconds(1) }
        let client = try await Self.book(server, events: 3_000)
        let stalled = try RawSocket(path: server.socketPath)
        defer { stalled.close() }
        stalled.send(#"{"jsonrpc":"2.0","id":1,"method":"segments.resolve","params":{"id":1,"batch_size":1}}"#)
        try await Task.sleep(for: .milliseconds(500))
        try await client.close()
        let stopped = Mutex(false)
        let stopping = Task {
            try await server.stop()
            stopped.withLock { $0 = true }
        }
        // Drain (1 s), cancellation's grace (5 s) and the flush (2 s): well within a minute.
        let ended = await waitUntil(seconds: 60) { stopped.withLock { $0 } }
        #expect(ended, "the shutdown ended")
        if ended { try await stopping.value }  // (else it hangs: the failure is reported, not waited for)
    }
}
