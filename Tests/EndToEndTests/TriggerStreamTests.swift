import SegmentdApp
import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import Synchronization
import TestThreads
import Testing
import WireJSON
#if canImport(Glibc)
import Glibc
#endif

/// Triggers over the socket (issue 5): events.subscribe while writes flow (the handover from
/// reading the log to following it live has no gap and no duplicate), a subscriber that stops
/// reading is disconnected after `--subscriber-timeout` and resumes without loss, one whose
/// next events were pruned is told the oldest cursor kept, and the methods' errors and replies.
@Suite(.ownThreads) struct TriggerStreamTests {
    /// Sets up the "Hot" segment (label hot) and a trigger on it for enter and exit.
    static func hotTrigger(_ client: RPCClient, members: Int64 = 0) async throws -> (segment: Int64, trigger: Int64) {
        let segment = try await client.call("segments.create", ["name": "Hot leads", "filters": [["dimension": "label", "op": "contains", "value": "hot"]]])
        let segmentID = try #require(segment["id"]?.intValue)
        let trigger = try await client.call("triggers.create", ["segment": .int(segmentID), "on": ["enter", "exit"]])
        #expect(trigger["members"] == .int(members) && trigger["time_dependent"] == false)
        return (segmentID, try #require(trigger["id"]?.intValue))
    }

    /// Every event in the log, paged through events.read.
    static func readAll(_ client: RPCClient, after: Int64 = 0, limit: Int = 137) async throws -> [JSONValue] {
        var events: [JSONValue] = []
        var cursor = after
        for _ in 0..<10_000 {
            let page = try await client.call("events.read", ["after": .int(cursor), "limit": .int(Int64(limit))])
            let items = page["events"]?.arrayValue ?? []
            if items.isEmpty {
                #expect(page["next"]?.intValue == cursor, "an empty page's next is the cursor given")
                break
            }
            events += items
            cursor = try #require(page["next"]?.intValue)
            #expect(cursor == items.last?["cursor"]?.intValue)
        }
        return events
    }

    /// The i-th write of the load: creates a hot contact, or (every fifth) cools one created
    /// earlier. Each is exactly one transition.
    static func loadWrite(_ i: Int) -> JSONValue {
        if i % 5 == 4 { return ["contacts": [["email": .string("lead\(i - 2)@example.com"), "remove_labels": ["hot"]]]] }
        return ["contacts": [["email": .string("lead\(i)@example.com"), "labels": ["hot", "lead"]]]]
    }


    /// The subscriber starts a third of the way into the writes and reads the log in pages of
    /// 7 while they go on: it moves from the backlog to waiting for new commits many times.
    @Test func subscribeWhileWritesFlowSeesEveryCursorOnceInOrder() async throws {
        let server = try await TestServer.start { $0.subscriberPageSize = 7 }
        let setup = try await server.client()
        let (segment, trigger) = try await Self.hotTrigger(setup)
        let writer = try await server.client()
        let subscriber = try await server.client()
        let total = 300
        let written = Atomic<Int>(0)
        let writes = Task {
            for i in 0..<total {
                let reply = try await writer.call("contacts.upsert", Self.loadWrite(i))
                #expect(reply["failed"] == [])
                written.add(1, ordering: .relaxed)
            }
        }
        // Subscribe from the very beginning once a third of the writes are in.
        #expect(await waitUntil(seconds: 30) { written.load(ordering: .relaxed) >= total / 3 })
        let received = Collected()
        let subscription = Task {
            try await subscriber.call("events.subscribe", ["after": 0]) { method, params in
                #expect(method == "events.event")
                received.add(params)
            }
        }
        try await writes.value
        let last = try await server.app.engine.lastCursor()
        #expect(last == Int64(total), "each write is exactly one transition")
        let caughtUp = await waitUntil(seconds: 20) { received.items.count >= total }
        #expect(caughtUp, "the subscriber got \(received.items.count) of \(total) events")
        subscription.cancel()
        let reply = try await subscription.value
        #expect(reply["ended"] == "cancelled")
        #expect(reply["last_cursor"]?.intValue == last)

        let streamed = received.items
        let cursors = streamed.compactMap { $0["cursor"]?.intValue }
        #expect(cursors == Array(1...Int64(total)), "cursors must arrive once each, in order, with no gap")
        #expect(streamed.allSatisfy { $0["id"]?.intValue != nil }, "each notification carries the request id")
        // The stream is the log, event for event.
        let logged = try await Self.readAll(setup)
        let strip = { (e: JSONValue) -> JSONValue in
            guard case .object(var o) = e else { return e }
            o.removeValue(forKey: "id")
            return .object(o)
        }
        #expect(streamed.map(strip) == logged)
        #expect(logged.allSatisfy { $0["segment"]?.intValue == segment && $0["trigger"]?.intValue == trigger && $0["cause"] == "contacts.upsert" })
        #expect(logged.filter { $0["type"] == "exit" }.count == total / 5)
        try await server.stop()
    }

    @Test func subscribeFromNowIsLiveOnlyAndFiltersByTrigger() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        let (_, hot) = try await Self.hotTrigger(client)
        let vip = try await client.call("segments.create", ["name": "VIP contacts", "filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
        let vipTrigger = try await client.call("triggers.create", ["segment": vip["id"]!])
        for i in 0..<5 { _ = try await client.call("contacts.upsert", Self.loadWrite(i)) }  // 5 old events
        let received = Collected()
        let subscriber = try await server.client()
        let subscription = Task {
            try await subscriber.call("events.subscribe", ["triggers": [.int(hot)]]) { _, params in received.add(params) }
        }
        // It starts live at whatever cursor is newest when it registers, which a loaded machine
        // may delay: write a vip and a hot event at a time until the first hot one arrives
        // (bounded), then five more pairs, all of which it must see.
        var i = 5
        while received.items.isEmpty, i < 300 {
            _ = try await client.call("contacts.upsert", ["contacts": [["email": .string("v\(i)@example.com"), "labels": ["vip"]]]])
            _ = try await client.call("contacts.upsert", Self.loadWrite(i))
            i += 1
            if received.items.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        let first = try #require(received.items.first?["cursor"]?.intValue, "the subscription never delivered a live event")
        for j in i..<(i + 5) {
            _ = try await client.call("contacts.upsert", ["contacts": [["email": .string("v\(j)@example.com"), "labels": ["vip"]]]])
            _ = try await client.call("contacts.upsert", Self.loadWrite(j))
        }
        // Exactly the hot trigger's events from the first one seen on, in order, and nothing older.
        let expected = try await Self.readAll(client).filter { $0["trigger"]?.intValue == hot && ($0["cursor"]?.intValue ?? 0) >= first }
        #expect(await waitUntil(seconds: 30) { received.items.count >= expected.count })
        subscription.cancel()
        // Its final reply comes after every notification it sent: none can arrive later.
        _ = await subscription.result
        let got = received.items
        #expect(expected.count >= 5)
        #expect(got.map { $0["cursor"] } == expected.map { $0["cursor"] })
        #expect(got.allSatisfy { $0["trigger"]?.intValue == hot })
        #expect(got.allSatisfy { ($0["cursor"]?.intValue ?? 0) > 5 }, "after defaults to the newest cursor: no replay")
        #expect(vipTrigger["on"] == ["enter"])
        try await server.stop()
    }

    /// A raw-socket subscriber from cursor 0 that reads nothing while `writes` writes of five
    /// transitions each land, with long emails: about 1 MB of notifications, far more than
    /// the socket buffers hold, so the server's writes to it wait.
    static func unreadSubscriber(_ server: TestServer, writes: Int) async throws -> (RawSocket, total: Int64) {
        let client = try await server.client()
        _ = try await Self.hotTrigger(client)
        let raw = try RawSocket(path: server.socketPath)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)  // a read never hangs the test
        setsockopt(raw.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        raw.send(#"{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":{"after":0}}"#)
        let pad = String(repeating: "x", count: 150)
        for w in 0..<writes {
            let batch: [JSONValue] = (0..<5).map { ["email": .string("\(pad)\(w * 5 + $0)@example.com"), "labels": ["hot"]] }
            _ = try await client.call("contacts.upsert", ["contacts": .array(batch)])
        }
        try await client.close()
        let total = Int64(writes * 5)
        #expect(try await server.app.engine.lastCursor() == total)
        return (raw, total)
    }

    /// Reads what the server sent to `raw`: the events' cursors, then the final reply.
    static func drain(_ raw: RawSocket, atMost: Int64) async -> (cursors: [Int64], reply: JSONValue?) {
        await Self.onThread { () -> (cursors: [Int64], reply: JSONValue?) in
            var cursors: [Int64] = []
            for _ in 0..<Int(atMost) + 10 {
                guard let line = raw.readLine(), let message = try? JSONParser.parse(line) else { break }
                if message["method"] == "events.event" {
                    cursors.append(message["params"]?["cursor"]?.intValue ?? -1)
                } else {
                    return (cursors, message)
                }
            }
            return (cursors, nil)
        }
    }

    @Test func aSubscriberThatStopsReadingIsDisconnectedAfterTheTimeoutAndResumesWithoutLoss() async throws {
        let server = try await TestServer.start { $0.subscriberTimeout = .seconds(1) }
        let (raw, total) = try await Self.unreadSubscriber(server, writes: 600)
        defer { raw.close() }
        // The subscription ends once one write to it has waited a second (bounded wait).
        let ended = await waitUntil(seconds: 60) { server.app.metrics.rpc().errorsByType["overloaded", default: 0] >= 1 }
        #expect(ended, "the stalled subscriber was not disconnected")

        // Now read everything the server sent: a prefix of the events, then the error.
        let outcome = await Self.drain(raw, atMost: total)
        let error = try #require(outcome.reply, "no final reply after \(outcome.cursors.count) events")
        #expect(error["id"] == 1)
        #expect(error["error"]?["code"] == -32004)
        #expect(error["error"]?["data"]?["type"] == "overloaded")
        let resume = try #require(error["error"]?["data"]?["last_cursor"]?.intValue, "\(error.serialized())")
        let message = error["error"]?["message"]?.stringValue ?? ""
        #expect(message == "subscriber read nothing for 1 s: its subscription ended (the connection stays open); subscribe again with after: \(resume)")
        #expect(outcome.cursors == Array(1...resume), "before the end: every event up to \(resume), once, in order")
        #expect(resume < total, "disconnected before the end")

        // Resuming after the cursor it names gets every remaining event exactly once.
        let received = Collected()
        let resumed = try await server.client()
        let subscription = Task {
            try await resumed.call("events.subscribe", ["after": .int(resume)]) { _, params in received.add(params) }
        }
        let caughtUp = await waitUntil(seconds: 30) { Int64(received.items.count) >= total - resume }
        #expect(caughtUp, "resumed subscriber got \(received.items.count) of \(total - resume)")
        subscription.cancel()
        _ = await subscription.result
        #expect(received.items.compactMap { $0["cursor"]?.intValue } == Array((resume + 1)...total))
        try await server.stop()
    }

    /// Retention removes the events a stalled subscriber has not read yet: it gets what the
    /// server had already read for it, then an error naming the oldest cursor still kept.
    @Test func aSubscriberWhoseNextCursorWasPrunedEndsNamingTheOldestKept() async throws {
        let server = try await TestServer.start { config in
            config.eventRetentionCount = 100
            config.subscriberTimeout = .seconds(600)  // only retention ends this one
            config.reevaluateEvery = .seconds(3_600)  // and only the test prunes
        }
        let (raw, total) = try await Self.unreadSubscriber(server, writes: 600)
        defer { raw.close() }
        #expect(try await server.app.engine.pruneEvents() == Int(total) - 100)

        let outcome = await Self.drain(raw, atMost: total)
        let error = try #require(outcome.reply, "no final reply after \(outcome.cursors.count) events")
        #expect(error["id"] == 1)
        #expect(error["error"]?["code"] == -32001)
        let data = error["error"]?["data"]
        #expect(data?["type"] == "not_found")
        let last = try #require(data?["last_cursor"]?.intValue, "\(error.serialized())")
        #expect(data?["oldest_cursor"] == .int(total - 99) && data?["resume_after"] == .int(total - 100))
        #expect(outcome.cursors == Array(1...last), "before the end: a gapless prefix")
        #expect(last < total - 100, "the subscriber was behind the retention horizon")
        let message = error["error"]?["message"]?.stringValue ?? ""
        #expect(message.contains("the oldest cursor still kept is \(total - 99)"), "\(message)")
        #expect(message.contains("subscribe again with after: \(total - 100)"), "\(message)")
        try await server.stop()
    }

    /// Runs blocking socket work on its own thread, off the cooperative pool the server needs.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    // MARK: Methods, replies and errors

    @Test func triggerMethodsAnswerAndRefuseClearly() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "ana@example.com", "labels": ["hot"]], ["email": "budi@example.com"]]])
        let (segment, trigger) = try await Self.hotTrigger(client, members: 1)
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "budi@example.com", "add_labels": ["HOT"]]]])
        let list = try await client.call("triggers.list")
        #expect(list["triggers"]?[0]?["members"] == 2)
        #expect(list["triggers"]?[0]?["on"] == ["enter", "exit"])
        let events = try await client.call("events.read", ["after": 0])
        #expect(events["events"]?.arrayValue?.count == 1)
        #expect(events["events"]?[0]?["email"] == "budi@example.com" && events["events"]?[0]?["type"] == "enter")
        #expect(events["next"] == 1)

        let badSegment = await #expect(throws: RPCError.self) { try await client.call("triggers.create", ["segment": 99]) }
        #expect(badSegment?.code == -32001 && badSegment?.message == "no segment with id 99")
        let badOn = await #expect(throws: RPCError.self) { try await client.call("triggers.create", ["segment": .int(segment), "on": ["enter", "leave"]]) }
        #expect(badOn?.code == -32602)
        let noneOn = await #expect(throws: RPCError.self) { try await client.call("triggers.create", ["segment": .int(segment), "on": []]) }
        #expect(noneOn?.code == -32602)
        let badTrigger = await #expect(throws: RPCError.self) { try await client.call("triggers.delete", ["id": 42]) }
        #expect(badTrigger?.code == -32001 && badTrigger?.message == "no trigger with id 42")
        let future = await #expect(throws: RPCError.self) { try await client.call("events.read", ["after": 5]) }
        #expect(future?.code == -32602 && future?.message == "cursor 5 is in the future: the newest event is 1")
        let futureSubscribe = await #expect(throws: RPCError.self) { try await client.call("events.subscribe", ["after": 5]) { _, _ in } }
        #expect(futureSubscribe?.code == -32602)
        let unknownTrigger = await #expect(throws: RPCError.self) { try await client.call("events.subscribe", ["after": 0, "triggers": [.int(trigger), 77]]) { _, _ in } }
        #expect(unknownTrigger?.code == -32602 && unknownTrigger?.data?["path"] == "triggers[1]")
        let badLimit = await #expect(throws: RPCError.self) { try await client.call("events.read", ["after": 0, "limit": 0]) }
        #expect(badLimit?.code == -32602)
        let negative = await #expect(throws: RPCError.self) { try await client.call("events.read", ["after": -1]) }
        #expect(negative?.code == -32602)

        // A rule edit re-baselines silently and says so; a name edit does not.
        let edited = try await client.call("segments.update", ["id": .int(segment), "filters": [["dimension": "label", "op": "contains", "value": "cold"]]])
        #expect(edited["rebaselined_triggers"] == [.int(trigger)])
        let renamed = try await client.call("segments.update", ["id": .int(segment), "name": "Cold leads"])
        #expect(renamed["rebaselined_triggers"] == [])
        #expect(try await client.call("events.read", ["after": 1])["events"] == [])
        #expect(try await client.call("triggers.list")["triggers"]?[0]?["members"] == 0)

        let refused = await #expect(throws: RPCError.self) { try await client.call("segments.delete", ["id": .int(segment)]) }
        #expect(refused?.code == -32002)
        #expect(refused?.message == "segment \(segment) has triggers \(trigger); delete them first or pass force: true")
        #expect(try await client.call("segments.delete", ["id": .int(segment), "force": true])["deleted"] == .int(segment))
        #expect(try await client.call("triggers.list")["triggers"] == [])
        #expect(try await client.call("events.read", ["after": 0])["events"]?.arrayValue?.count == 1, "past events stay")
        try await server.stop()
    }

    @Test func clockTickOverTheServerFiresWithCauseClock() async throws {
        let server = try await TestServer.start()
        let client = try await server.client()
        _ = try await client.call("contacts.upsert", ["contacts": [["email": "ana@example.com"]]])
        _ = try await client.call("engagement.record", ["events": [["email": "ana@example.com", "type": "open", "at": "2026-01-10T12:00:00Z"]]])
        let segment = try await client.call("segments.create", ["name": "Opened this week", "filters": [
            ["dimension": "engagement", "event": "open", "op": "within_last", "value": ["days": 7]]]])
        let trigger = try await client.call("triggers.create", ["segment": segment["id"]!, "on": ["exit"]])
        #expect(trigger["time_dependent"] == true && trigger["members"] == 1)
        // The epoch is 2026-01-15T12:00Z: the open falls out of the last 7 days after 2026-01-17T12:00Z.
        server.clock.advance(days: 2)
        #expect(try await server.app.engine.reevaluateClock() == 0)
        server.clock.advance(seconds: 1)
        #expect(try await server.app.engine.reevaluateClock() == 1)
        let events = try await client.call("events.read", [:])
        #expect(events["events"]?[0]?["cause"] == "clock")
        #expect(events["events"]?[0]?["type"] == "exit")
        #expect(events["events"]?[0]?["at"] == "2026-01-17T12:00:01Z")
        try await server.stop()
    }
}
