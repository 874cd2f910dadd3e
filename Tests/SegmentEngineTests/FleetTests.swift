import Foundation
import PostgresStore
import SegmentCore
import SegmentEngine
import TestPostgres
import TestThreads
import Testing
import WireJSON

/// Several nodes (engines) serving one book in PostgreSQL: what a user running three
/// replicas of a service, each with a segmentd sidecar, relies on.
@Suite(.ownThreads) struct FleetTests {
    /// Writes land on all three nodes in turn (the oracle book's whole build: definitions,
    /// suppressions, contacts, events, updates, deletes); at the same `min_version` every
    /// node, and a fourth that loads the book afresh, answers every rule as the oracle does.
    @Test func threeNodesAnswerLikeTheOracleAtTheSameVersion() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine, b = try book.node(), c = try book.node()
        defer {
            try? b.close()
            try? c.close()
        }
        book.rotateWriters(among: [a, b, c])
        var builder = OracleBookBuilder(seed: 0xF1EE7, now: TestBook.start)
        let model = try await builder.build(into: book, contacts: 3_000)
        book.rotateWriters(among: [])
        try await a.refresh()
        let version = a.snapshot.version
        #expect(version > 10)
        for node in [a, b, c] { try await node.waitFor(version: version, timeout: .seconds(10)) }
        #expect([a, b, c].map(\.snapshot.version) == [version, version, version])
        let d = try book.node()
        defer { try? d.close() }
        for (name, node) in [("a", a), ("b", b), ("c", c), ("fresh", d)] {
            let view = TestBook(borrowing: node, clock: book.clock)
            #expect(node.countContacts().total == model.alive.count, "node \(name)")
            _ = try OracleTests.check(view, model: model, ruleSeed: 0xBEEF, rules: 60, name: "node \(name): ")
        }
        // Followers applied changes rather than reloading the book.
        #expect(b.fleetStatus?.reloads == 0 && (b.fleetStatus?.changesApplied ?? 0) > 0)
    }

    /// A trigger's events are written once, by the node that made the change, and a reader on
    /// a third node sees those of both writers in cursor order with no gap and no duplicate,
    /// live and from the log.
    @Test func eventsOnceAcrossNodesAndAThirdNodeSeesThemAllInOrder() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine, b = try book.node(), c = try book.node()
        defer {
            try? b.close()
            try? c.close()
        }
        let segment = try await a.createSegment(name: "hot", filters: [filter("label", "contains", "hot")])
        let trigger = try await b.createTrigger(segment: segment.id, onEnter: true, onExit: true, includeExisting: false)
        let expected = 2 * 60 + 2 * 30  // every contact enters; half of each writer's leave
        let live = Task { () -> [TriggerEvent] in
            var got: [TriggerEvent] = []
            for try await event in c.eventFeed(after: 0) {
                got.append(event)
                if got.count == expected { break }
            }
            return got
        }
        defer { live.cancel() }
        async let fromA: Void = Self.churn(a, prefix: "a")
        async let fromB: Void = Self.churn(b, prefix: "b")
        _ = try await (fromA, fromB)

        let streamed = try await within(seconds: 30) { try await live.value }
        let (logged, _) = try await c.readEvents(after: 0, limit: 10_000)
        #expect(streamed.map(\.cursor) == Array(1...Int64(expected)), "live: no gap, no duplicate, in cursor order")
        #expect(logged.map(\.cursor) == streamed.map(\.cursor))
        #expect(logged.allSatisfy { $0.trigger == trigger.id })
        var perContact: [String: [String]] = [:]
        for event in logged { perContact[event.email, default: []].append(event.type) }
        #expect(perContact.count == 120)
        for (email, types) in perContact {
            let index = Int(email.dropFirst(1).prefix { $0.isNumber })!
            #expect(types == (index < 30 ? ["enter", "exit"] : ["enter"]), "\(email): \(types)")
        }
    }

    /// Writes 60 contacts with the label in small batches, then removes it from the first 30.
    static func churn(_ engine: Engine, prefix: String) async throws {
        for start in stride(from: 0, to: 60, by: 5) {
            let docs: [JSONValue] = (start..<start + 5).map { ["email": .string("\(prefix)\($0)@fleet.example"), "labels": ["hot"]] }
            _ = try await engine.upsert(contacts: docs)
        }
        for start in stride(from: 0, to: 30, by: 10) {
            let docs: [JSONValue] = (start..<start + 10).map { ["email": .string("\(prefix)\($0)@fleet.example"), "labels": []] }
            _ = try await engine.upsert(contacts: docs)
        }
    }

    /// Read-your-writes: a write's version, asked for on another node, is there at once (the
    /// node catches up instead of waiting for its notification); a version nobody wrote times
    /// out with an error naming both versions.
    @Test func minVersionReadsYourWritesOnAnyNode() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine
        var quiet = FleetSettings()
        quiet.catchUpInterval = .seconds(60)
        let b = try book.node(fleet: quiet)
        defer { try? b.close() }
        _ = try await a.upsert(contacts: [["email": "ana@fleet.example", "labels": ["vip"]]])
        let version = a.snapshot.version
        try await b.waitFor(version: version)
        #expect(b.snapshot.version >= version)
        #expect(try b.count(filters: [filter("label", "contains", "vip")], audience: .all).matched == 1)
        let future = version + 5
        await #expect {
            try await b.waitFor(version: future, timeout: .milliseconds(100))
        } throws: { error in
            let e = error as? SegmentError
            return e?.kind == .unavailable && e?.message.contains("min_version \(future)") == true
                && e?.message.contains("applied version \(b.snapshot.version)") == true
        }
    }

    /// A node hears of another node's write by its notification, at once: with its periodic
    /// catch-up a minute away, it still applies the write within moments.
    @Test func notificationsWakeFollowersAtOnce() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine
        var slow = FleetSettings()
        slow.catchUpInterval = .seconds(60)
        let b = try book.node(fleet: slow)
        defer { try? b.close() }
        // Its LISTEN starts in the background: give it a moment, then write.
        try await Task.sleep(for: .milliseconds(500))
        for n in 0..<5 {
            _ = try await a.upsert(contacts: [["email": .string("n\(n)@fleet.example")]])
            let version = a.snapshot.version
            let started = ContinuousClock.now
            let reached = try await within(seconds: 10) { () async -> Bool in
                while b.snapshot.version < version { try? await Task.sleep(for: .milliseconds(5)) }
                return true
            }
            print("notified in \(ContinuousClock.now - started)")
            #expect(reached)
        }
    }

    /// A node hears of its own writes too, and does not ask the store for them again: each of
    /// its writes is one store operation, and another node's write one more (its catch-up).
    @Test func aNodeDoesNotCatchUpOnItsOwnWrites() async throws {
        let book = try TestBook(backend: .postgres)
        var slow = FleetSettings()
        slow.catchUpInterval = .seconds(60)
        let node = try book.node(fleet: slow)
        defer { try? node.close() }
        // Its first catch-up, and its LISTEN (which wakes it once when it starts), are done.
        #expect(await waitUntil { node.fleetStatus?.lastReached != nil })
        try await Task.sleep(for: .milliseconds(500))
        let before = node.storeOperations
        for n in 0..<20 { _ = try await node.upsert(contacts: [["email": .string("own\(n)@fleet.example")]]) }
        _ = try await book.engine.upsert(contacts: [["email": "other@fleet.example"]])
        let version = book.engine.snapshot.version
        #expect(await waitUntil { node.snapshot.version >= version }, "the other node's write is applied")
        try await Task.sleep(for: .milliseconds(200))
        let spent = node.storeOperations - before
        #expect(spent >= 21 && spent <= 22, "20 writes and 1 catch-up (22: a late LISTEN start), not a catch-up per own write: \(spent)")
    }

    /// A node that hears no notification (its LISTEN is off) still applies every change, by
    /// its periodic catch-up.
    @Test func aLostNotificationIsCoveredByTheCatchUp() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine
        var fleet = FleetSettings()
        fleet.catchUpInterval = .milliseconds(200)
        let configuration = try Self.deafConfiguration(book, fleet: fleet)
        let deaf = try Engine(configuration: configuration, registry: TestBook.registry(), logger: TestBook.quietLogger)
        defer { try? deaf.close() }
        _ = try await a.upsert(contacts: [["email": "bo@fleet.example"]])
        let version = a.snapshot.version
        let reached = try await within(seconds: 10) { () async -> Bool in
            while deaf.snapshot.version < version { try? await Task.sleep(for: .milliseconds(20)) }
            return true
        }
        #expect(reached && deaf.contact(email: "bo@fleet.example") != nil)
    }

    /// A node validates contacts against the latest definitions, not only those it has
    /// applied: a field another node defined a moment ago is known, and one it deleted a
    /// moment ago is refused (validated again under the book's lock): an atomic batch whole,
    /// a batch left with nothing valid without writing a version.
    @Test func writesValidateAgainstTheLatestDefinitions() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine
        var fleet = FleetSettings()
        fleet.catchUpInterval = .seconds(600)
        let behind = try Engine(configuration: try Self.deafConfiguration(book, fleet: fleet), registry: TestBook.registry(), logger: TestBook.quietLogger)
        defer { try? behind.close() }
        // Its first catch-up (right after loading) is done before the other node writes.
        #expect(await waitUntil { behind.fleetStatus?.lastReached != nil })
        _ = try await a.run(try book.method("fields.define"), params: ["name": "plan", "type": "number"])
        let defined = try await behind.upsert(contacts: [["email": "first@fleet.example", "fields": ["plan": 3]]])
        #expect(defined.created == 1 && defined.failed.isEmpty, "a field defined on another node is known")

        _ = try await a.run(try book.method("fields.delete"), params: ["name": "plan", "force": true])
        let deleted = a.snapshot.version
        await #expect(throws: SegmentError.self) {
            _ = try await behind.upsert(contacts: [["email": "atomic@fleet.example", "fields": ["plan": 5]], ["email": "fine@fleet.example"]], atomic: true)
        }
        #expect(behind.snapshot.version < deleted, "refused under the lock: the node validated on a state without the delete")
        let nothing = try await behind.upsert(contacts: [["email": "alone@fleet.example", "fields": ["plan": 6]]])
        #expect(nothing.failed.map(\.index) == [0] && nothing.created == 0)
        let mixed = try await behind.upsert(contacts: [["email": "second@fleet.example", "fields": ["plan": 4]], ["email": "third@fleet.example"]])
        #expect(mixed.failed.map(\.index) == [0] && mixed.created == 1, "\(mixed.failed)")
        #expect(mixed.failed.first?.error.message.contains("unknown field \"plan\"") == true)
        try await a.waitFor(version: deleted + 1)
        #expect(a.snapshot.version == deleted + 1, "one write after the delete: the refused ones wrote no version")
        for email in ["atomic@fleet.example", "fine@fleet.example", "alone@fleet.example", "second@fleet.example"] {
            #expect(a.contact(email: email) == nil, "\(email) was refused")
        }
        #expect(a.contact(email: "third@fleet.example") != nil)
    }

    /// Change records older than the horizon are pruned (by the clock leader, with retention);
    /// a node that was further behind reloads the book and answers like the others.
    @Test func aNodeBehindThePrunedChangesReloads() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine
        var fleet = FleetSettings()
        fleet.catchUpInterval = .seconds(600)
        fleet.changeHorizonSeconds = 60
        let configuration = try Self.deafConfiguration(book, fleet: fleet)
        let behind = try Engine(configuration: configuration, registry: TestBook.registry(), logger: TestBook.quietLogger)
        defer { try? behind.close() }
        // Its first catch-up (right after loading) is done before the others write.
        #expect(await waitUntil { behind.fleetStatus?.lastReached != nil })
        for n in 0..<5 { _ = try await a.upsert(contacts: [["email": .string("old\(n)@fleet.example"), "labels": ["vip"]]]) }
        book.clock.advance(seconds: 3_600)
        _ = try await a.upsert(contacts: [["email": "new@fleet.example", "labels": ["vip"]]])
        let leader = try Engine(configuration: configuration, registry: TestBook.registry(), logger: TestBook.quietLogger)
        _ = try await leader.pruneEvents()
        try leader.close()
        try await behind.waitFor(version: a.snapshot.version)
        #expect(behind.fleetStatus?.reloads == 1, "the records it needed were pruned: it reloaded")
        #expect(try behind.count(filters: [filter("label", "contains", "vip")], audience: .all).matched == 6)
    }

    /// Clock re-evaluation runs on one node, the holder of the book's clock lock; when it
    /// goes, another takes the lock, and the transitions are recorded exactly once, even when
    /// two nodes re-evaluate at the same moment.
    @Test func clockLeadHandsOverAndTransitionsAreRecordedOnce() async throws {
        let book = try TestBook(backend: .postgres)
        let a = book.engine
        let b = try book.node()
        #expect(await a.holdsClockLead())
        #expect(await !b.holdsClockLead())
        let segment = try await a.createSegment(name: "recent", filters: [engagement("open", "within_last", days(1))])
        _ = try await a.createTrigger(segment: segment.id, onEnter: true, onExit: true, includeExisting: false)
        let emails = (0..<20).map { "c\($0)@fleet.example" }
        _ = try await a.upsert(contacts: emails.map { ["email": .string($0)] })
        try await book.record(emails.enumerated().map { ($1, "open", ISOTime.format(TestBook.start - Double($0) * 3_600)) })
        let entered = try await a.readEvents(after: 0, limit: 100).events.count
        #expect(entered == 20)
        // Ten hours pass: the five opens older than 14 h leave; both nodes re-evaluate at once.
        book.clock.advance(seconds: 10 * 3_600)
        async let fromA = a.reevaluateClock()
        async let fromB = b.reevaluateClock()
        _ = try await (fromA, fromB)
        var events = try await b.readEvents(after: 0, limit: 100).events
        #expect(events.filter { $0.type == "exit" }.count == 5)
        // The leader goes; the other node takes the lead and the next transitions.
        try a.close()
        let took = try await within(seconds: 10) { () async -> Bool in
            while await !b.holdsClockLead() { try? await Task.sleep(for: .milliseconds(50)) }
            return true
        }
        #expect(took)
        book.clock.advance(seconds: 5 * 3_600)
        _ = try await b.reevaluateClock()
        events = try await b.readEvents(after: 0, limit: 100).events
        #expect(events.filter { $0.type == "exit" }.count == 10)
        #expect(Set(events.map { "\($0.email) \($0.type)" }).count == events.count, "no event twice")
        try b.close()
    }
}

extension FleetTests {
    /// A node of `book`'s fleet that hears no notification (its LISTEN is off).
    static func deafConfiguration(_ book: TestBook, fleet: FleetSettings) throws -> Engine.Configuration {
        var configuration = Engine.Configuration(databasePath: book.path, clock: book.clock)
        let url = try TestPostgres.shared().url
        configuration.name = book.bookName
        configuration.fleet = fleet
        configuration.openStore = { name, providers in try PostgresBookStore(url: url, book: name, providers: providers, listens: false) }
        return configuration
    }
}

/// Runs `body`, failing the test if it takes longer than `seconds` (a hang guard).
func within<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard case let value?? = try await group.next() else { throw SegmentError(.internal, "timed out after \(seconds) s") }
        return value
    }
}
