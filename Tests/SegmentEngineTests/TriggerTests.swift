import Foundation
import PostgresStore
import SegmentCore
import SegmentEngine
import Synchronization
import TestPostgres
import TestThreads
import Testing
import WireJSON

/// Automation triggers at the engine level (issue 5): each cause of a transition, exactly one
/// event per transition, include_existing, persisted baselines, re-baselining on a rule edit,
/// retention and cursor errors. Time moves only through `ManualTime`; nothing sleeps. Feeds
/// wait for events, so each test has a time limit: a broken build fails a test, not the run.
@Suite(.timeLimit(.minutes(3)), .ownThreads) struct TriggerTests {
    // MARK: Fixtures

    /// A book with `city` (text) and `lifetime_value` (number) and four contacts:
    /// ana (vip, customer, Jakarta, opened 10 days ago), budi (newsletter, engaged, Bandung,
    /// opened 29 days ago), citra (no labels, no stage, no events), dewi (vip, loyal_customer).
    static func book(_ backend: Backend = .sqlite) async throws -> TestBook {
        let book = try TestBook(backend: backend)
        try await book.define("city", "text")
        try await book.define("lifetime_value", "number")
        try await book.seed([
            ["email": "ana@example.com", "labels": ["vip"], "funnel": "customer", "fields": ["city": "Jakarta", "lifetime_value": 2400]],
            ["email": "budi@example.com", "labels": ["newsletter"], "funnel": "engaged", "fields": ["city": "Bandung"]],
            ["email": "citra@example.com"],
            ["email": "dewi@example.com", "labels": ["vip"], "funnel": "loyal_customer"],
        ])
        let text = TimeText()
        try await book.record([
            ("ana@example.com", "open", text.stamp(TestBook.start - 10 * TestBook.day)),
            ("budi@example.com", "open", text.stamp(TestBook.start - 29 * TestBook.day)),
        ])
        return book
    }

    /// A segment with `filters` and a trigger on it.
    static func trigger(
        _ book: TestBook, _ filters: JSONValue, enter: Bool = true, exit: Bool = true, includeExisting: Bool = false,
        name: String = "Watched"
    ) async throws -> (segment: Segment, trigger: Trigger) {
        let segment = try await book.engine.createSegment(name: name, filters: filters)
        let trigger = try await book.engine.createTrigger(segment: segment.id, onEnter: enter, onExit: exit, includeExisting: includeExisting)
        return (segment, trigger)
    }

    /// Every event in the log after `after`.
    static func events(_ engine: Engine, after: Int64 = 0) async throws -> [TriggerEvent] {
        try await engine.readEvents(after: after, limit: 10_000).events
    }

    /// What an event says, without cursor and time, for comparisons.
    struct Seen: Equatable, CustomStringConvertible {
        var type: String
        var email: String
        var trigger: Int64
        var segment: Int64
        var cause: String
        var description: String { "\(type) \(email) t\(trigger) s\(segment) (\(cause))" }
    }

    static func seen(_ events: [TriggerEvent]) -> [Seen] {
        events.map { Seen(type: $0.type, email: $0.email, trigger: $0.trigger, segment: $0.segment, cause: $0.cause) }
    }

    /// Runs `action` and returns exactly the events it recorded.
    static func eventsOf(_ book: TestBook, _ action: () async throws -> Void) async throws -> [TriggerEvent] {
        let before = try await book.engine.lastCursor()
        try await action()
        return try await events(book.engine, after: before)
    }

    // MARK: Each cause

    @Test(arguments: Backend.allCases) func labelGainedFiresEnterWithUpsertAsCause(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        let got = try await Self.eventsOf(book) { try await book.seed([["email": "citra@example.com", "add_labels": ["VIP"]]]) }
        #expect(Self.seen(got) == [Seen(type: "enter", email: "citra@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        #expect(got.first?.at == TestBook.start)
    }

    @Test(arguments: Backend.allCases) func labelRemovedFiresExit(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        let got = try await Self.eventsOf(book) { try await book.seed([["email": "ana@example.com", "remove_labels": ["vip"]]]) }
        #expect(Self.seen(got) == [Seen(type: "exit", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        // Replacing the whole label set works the same way.
        let replaced = try await Self.eventsOf(book) { try await book.seed([["email": "dewi@example.com", "labels": ["newsletter"]]]) }
        #expect(Self.seen(replaced) == [Seen(type: "exit", email: "dewi@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
    }

    @Test func funnelTransitionFiresEnterThenExit() async throws {
        let book = try await Self.book()
        let (segment, trigger) = try await Self.trigger(book, [filter("funnel", "equals", "customer")])
        let entered = try await Self.eventsOf(book) { try await book.seed([["email": "budi@example.com", "funnel": "customer"]]) }
        #expect(Self.seen(entered) == [Seen(type: "enter", email: "budi@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        let left = try await Self.eventsOf(book) { try await book.seed([["email": "budi@example.com", "funnel": "loyal_customer"]]) }
        #expect(Self.seen(left) == [Seen(type: "exit", email: "budi@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        // The lost flag is part of the funnel dimension too.
        let (lostSegment, lostTrigger) = try await Self.trigger(book, [["dimension": "funnel", "lost": true]], name: "Lost")
        let lost = try await Self.eventsOf(book) { try await book.seed([["email": "dewi@example.com", "lost": true]]) }
        #expect(Self.seen(lost) == [Seen(type: "enter", email: "dewi@example.com", trigger: lostTrigger.id, segment: lostSegment.id, cause: "contacts.upsert")])
    }

    @Test(arguments: Backend.allCases) func fieldUpdateFiresEnterAndClearingFiresExit(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [field("city", "equals", "jakarta")])
        let entered = try await Self.eventsOf(book) { try await book.seed([["email": "budi@example.com", "fields": ["city": "JAKARTA"]]]) }
        #expect(Self.seen(entered) == [Seen(type: "enter", email: "budi@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        let cleared = try await Self.eventsOf(book) { try await book.seed([["email": "ana@example.com", "fields": ["city": .null]]]) }
        #expect(Self.seen(cleared) == [Seen(type: "exit", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])

        let (valueSegment, valueTrigger) = try await Self.trigger(book, [field("lifetime_value", "greater_than", 1000)], name: "High value")
        let crossed = try await Self.eventsOf(book) { try await book.seed([["email": "dewi@example.com", "fields": ["lifetime_value": 1000.5]]]) }
        #expect(Self.seen(crossed) == [Seen(type: "enter", email: "dewi@example.com", trigger: valueTrigger.id, segment: valueSegment.id, cause: "contacts.upsert")])
    }

    @Test(arguments: Backend.allCases) func statusChangeFiresAndSuppressionDoesNot(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [filter("status", "equals", "active"), filter("label", "contains", "vip")])
        let unsubscribed = try await Self.eventsOf(book) { try await book.seed([["email": "ana@example.com", "status": "unsubscribed"]]) }
        #expect(Self.seen(unsubscribed) == [Seen(type: "exit", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        let back = try await Self.eventsOf(book) { try await book.seed([["email": "ana@example.com", "status": "active"]]) }
        #expect(Self.seen(back) == [Seen(type: "enter", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        // Membership is the rule alone: suppression is the send audience's business.
        let suppressed = try await Self.eventsOf(book) {
            _ = try await book.engine.suppress(emails: ["dewi@example.com"], reason: "complaint")
            _ = try await book.engine.unsuppress(emails: ["dewi@example.com"])
        }
        #expect(suppressed.isEmpty, "suppression fired \(Self.seen(suppressed))")
    }

    @Test(arguments: Backend.allCases) func engagementEventFiresWithItsMethodAsCause(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [engagement("click", "ever")])
        let got = try await Self.eventsOf(book) {
            try await book.record([("citra@example.com", "click", TimeText().stamp(TestBook.start - 3600))])
        }
        #expect(Self.seen(got) == [Seen(type: "enter", email: "citra@example.com", trigger: trigger.id, segment: segment.id, cause: "engagement.record")])
        // A second click while a member, and an older one, fire nothing.
        let again = try await Self.eventsOf(book) {
            try await book.record([("citra@example.com", "click", TimeText().stamp(TestBook.start)),
                                   ("citra@example.com", "click", TimeText().stamp(TestBook.start - 50 * TestBook.day))])
        }
        #expect(again.isEmpty)
    }

    @Test(arguments: Backend.allCases) func deletingAContactFiresExitWithItsEmail(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        let got = try await Self.eventsOf(book) { _ = try await book.engine.delete(emails: ["ANA@example.com"]) }
        #expect(Self.seen(got) == [Seen(type: "exit", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.delete")])
        // A deleted non-member fires nothing; a new contact with the same email is a new enter.
        let quiet = try await Self.eventsOf(book) { _ = try await book.engine.delete(emails: ["citra@example.com"]) }
        #expect(quiet.isEmpty)
        let recreated = try await Self.eventsOf(book) { try await book.seed([["email": "ana@example.com", "labels": ["vip"]]]) }
        #expect(Self.seen(recreated) == [Seen(type: "enter", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
    }

    @Test(arguments: Backend.allCases) func clockPassingAWithinLastBoundaryFiresWithCauseClock(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        // budi opened 29 days ago: in "within the last 30 days" until one more day passes.
        let (recent, recentTrigger) = try await Self.trigger(book, [engagement("open", "within_last", days(30))], name: "Recent openers")
        let (lapsed, lapsedTrigger) = try await Self.trigger(
            book, [engagement("open", "not_within_last", days(30)), engagement("open", "ever")], name: "Lapsed openers")
        #expect(recentTrigger.members.count == 2 && lapsedTrigger.members.count == 0)
        #expect(book.engine.triggers().allSatisfy { $0.rule.isTimeDependent })

        // Nothing changes while the clock stands still.
        #expect(try await book.engine.reevaluateClock() == 0)
        // 23 hours: still within (29 d 23 h ago).
        book.clock.advance(seconds: 23 * 3600)
        #expect(try await book.engine.reevaluateClock() == 0)
        // Exactly on the boundary (30 days ago) is still within; one second later it is not.
        book.clock.advance(seconds: 3600)
        #expect(try await book.engine.reevaluateClock() == 0)
        book.clock.advance(seconds: 1)
        let before = try await book.engine.lastCursor()
        #expect(try await book.engine.reevaluateClock() == 2)
        let got = try await Self.events(book.engine, after: before)
        #expect(Self.seen(got) == [
            Seen(type: "exit", email: "budi@example.com", trigger: recentTrigger.id, segment: recent.id, cause: "clock"),
            Seen(type: "enter", email: "budi@example.com", trigger: lapsedTrigger.id, segment: lapsed.id, cause: "clock"),
        ])
        #expect(got.allSatisfy { $0.at == book.clock.now() })
        // Re-evaluating again at the same time fires nothing: the baseline moved.
        #expect(try await book.engine.reevaluateClock() == 0)
        // ana lapses 20 days later.
        book.clock.advance(days: 20)
        var fired = 0
        let later = try await Self.eventsOf(book) { fired = try await book.engine.reevaluateClock() }
        #expect(fired == 2)
        #expect(Set(later.map(\.email)) == ["ana@example.com"])
    }

    @Test func clockReevaluationLeavesTimeIndependentTriggersAlone() async throws {
        let book = try await Self.book()
        _ = try await Self.trigger(book, [filter("label", "contains", "vip")])
        book.clock.advance(days: 400)
        #expect(try await book.engine.reevaluateClock() == 0)
    }

    // MARK: Exactly one event per transition

    @Test(arguments: Backend.allCases) func repeatWritesWhileAMemberFireNothingAndReentryFiresExitThenEnter(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (_, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip"), filter("funnel", "in", ["customer", "loyal_customer"])])
        // Already members (baseline): rewriting the same values, or unrelated changes, fire nothing.
        let quiet = try await Self.eventsOf(book) {
            for _ in 0..<5 {
                try await book.seed([
                    ["email": "ana@example.com", "labels": ["vip"], "funnel": "customer"],
                    ["email": "dewi@example.com", "add_labels": ["vip", "newsletter"], "fields": ["city": "Medan"]],
                ])
            }
            try await book.record([("ana@example.com", "open", TimeText().stamp(TestBook.start))])
            try await book.seed([["email": "ana@example.com", "funnel": "loyal_customer"]])  // still in the rule
        }
        #expect(quiet.isEmpty, "fired \(Self.seen(quiet))")

        // Citra enters once, however many times the write is repeated.
        var enters = 0
        for _ in 0..<4 {
            let got = try await Self.eventsOf(book) { try await book.seed([["email": "citra@example.com", "add_labels": ["vip"], "funnel": "customer"]]) }
            enters += got.filter { $0.type == "enter" && $0.email == "citra@example.com" }.count
            #expect(got.allSatisfy { $0.type == "enter" })
        }
        #expect(enters == 1)

        // Leaving and coming back: exit then enter, in that order, one each.
        let round = try await Self.eventsOf(book) {
            try await book.seed([["email": "citra@example.com", "remove_labels": ["vip"]]])
            try await book.seed([["email": "citra@example.com", "remove_labels": ["vip"]]])
            try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
            try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
        }
        #expect(round.map(\.type) == ["exit", "enter"])
        #expect(round.allSatisfy { $0.email == "citra@example.com" && $0.trigger == trigger.id })
        #expect(zip(round, round.dropFirst()).allSatisfy { $0.cursor < $1.cursor })

        // One write that leaves and re-enters within itself is no transition.
        let within = try await Self.eventsOf(book) {
            try await book.seed([["email": "citra@example.com", "labels": ["other"], "add_labels": ["vip"]]])
        }
        #expect(within.isEmpty)
    }

    @Test func onSelectsWhichTransitionsAreRecorded() async throws {
        let book = try await Self.book()
        let (_, enterOnly) = try await Self.trigger(book, [filter("label", "contains", "vip")], enter: true, exit: false, name: "Enter only")
        let (_, exitOnly) = try await Self.trigger(book, [filter("label", "contains", "vip")], enter: false, exit: true, name: "Exit only")
        let got = try await Self.eventsOf(book) {
            try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
            try await book.seed([["email": "citra@example.com", "remove_labels": ["vip"]]])
            try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
        }
        #expect(got.filter { $0.trigger == enterOnly.id }.map(\.type) == ["enter", "enter"])
        #expect(got.filter { $0.trigger == exitOnly.id }.map(\.type) == ["exit"])
        // Both triggers still track membership even for the transitions they do not record.
        #expect(book.engine.triggers().map(\.members.count) == [3, 3])
        await #expect(throws: SegmentError.self) {
            _ = try await book.engine.createTrigger(segment: 1, onEnter: false, onExit: false, includeExisting: false)
        }
    }

    @Test func oneWriteTouchingManyContactsFiresOneEventEach() async throws {
        let book = try await Self.book()
        let (_, trigger) = try await Self.trigger(book, [filter("label", "contains", "wave")])
        let docs: [JSONValue] = (0..<250).map { ["email": .string("wave\($0)@example.com"), "labels": ["wave"]] }
        let got = try await Self.eventsOf(book) { try await book.seed(docs) }
        #expect(got.count == 250)
        #expect(Set(got.map(\.email)).count == 250)
        #expect(got.allSatisfy { $0.type == "enter" && $0.trigger == trigger.id })
        #expect(zip(got, got.dropFirst()).allSatisfy { $0.cursor + 1 == $1.cursor })
    }

    /// Events are inserted a hundred rows per statement; the cursors handed to live
    /// subscribers must be exactly the stored rows' (a feed drops what it thinks it has seen).
    @Test func liveEventsCarryTheCursorsOfTheirStoredRows() async throws {
        let book = try await Self.book()
        _ = try await Self.trigger(book, [filter("label", "contains", "tide")])
        let before = try await book.engine.lastCursor()
        var feed = book.engine.eventFeed(after: before).makeAsyncIterator()
        let docs: [JSONValue] = (0..<250).map { ["email": .string("tide\($0)@example.com"), "labels": ["tide"]] }
        try await book.seed(docs)
        var live: [TriggerEvent] = []
        while live.count < 250, let event = try await feed.next() { live.append(event) }
        let stored = try await book.engine.readEvents(after: before, limit: 1_000).events
        #expect(live.count == 250)
        #expect(live == stored)
    }

    @Test(arguments: Backend.allCases) func largeWritesFireTheSameEventsAsSmallOnes(_ backend: Backend) async throws {
        // Above a few hundred touched contacts the evaluator resolves rules whole: the events
        // must be the same as contact-by-contact (enters, exits, deleted contacts' emails).
        let book = try await Self.book(backend)
        let (_, trigger) = try await Self.trigger(book, [filter("label", "contains", "wave"), filter("status", "equals", "active")])
        let created: [JSONValue] = (0..<700).map { i in
            ["email": .string("wave\(i)@example.com"), "labels": i % 2 == 0 ? ["wave"] : ["calm"]]
        }
        let entered = try await Self.eventsOf(book) { try await book.seed(created) }
        #expect(entered.count == 350 && entered.allSatisfy { $0.type == "enter" && $0.trigger == trigger.id })
        #expect(Set(entered.map(\.email)) == Set((0..<700).filter { $0 % 2 == 0 }.map { "wave\($0)@example.com" }))
        // One write: 300 members unsubscribe (exit), 300 non-members gain the label (enter),
        // 50 members are rewritten unchanged (nothing).
        var mixed: [JSONValue] = []
        for i in 0..<600 where i % 2 == 0 { mixed.append(["email": .string("wave\(i)@example.com"), "status": "unsubscribed"]) }
        for i in 0..<600 where i % 2 == 1 { mixed.append(["email": .string("wave\(i)@example.com"), "add_labels": ["wave"]]) }
        for i in 600..<700 where i % 2 == 0 { mixed.append(["email": .string("wave\(i)@example.com"), "labels": ["wave"]]) }
        let both = try await Self.eventsOf(book) { try await book.seed(mixed) }
        #expect(both.filter { $0.type == "exit" }.count == 300)
        #expect(both.filter { $0.type == "enter" }.count == 300)
        #expect(Set(both.map(\.email)).count == 600)
        // Deleting 400 at once: the members among them exit under their own emails.
        let doomed = (300..<700).map { "wave\($0)@example.com" }
        let deleted = try await Self.eventsOf(book) { _ = try await book.engine.delete(emails: doomed) }
        let stillIn = (300..<700).filter { ($0 % 2 == 1 && $0 < 600) || ($0 % 2 == 0 && $0 >= 600) }
        #expect(deleted.allSatisfy { $0.type == "exit" && $0.cause == "contacts.delete" })
        #expect(Set(deleted.map(\.email)) == Set(stillIn.map { "wave\($0)@example.com" }))
        #expect(deleted.count == stillIn.count)
        #expect(book.engine.triggers().first?.members.count == 150)
    }

    // MARK: include_existing

    @Test(arguments: Backend.allCases) func includeExistingFiresEntersForCurrentMembersAndDefaultDoesNot(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let segment = try await book.engine.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip")])
        let quiet = try await Self.eventsOf(book) {
            let t = try await book.engine.createTrigger(segment: segment.id, onEnter: true, onExit: true, includeExisting: false)
            #expect(t.members.count == 2)
        }
        #expect(quiet.isEmpty)
        var created: Trigger?
        let loud = try await Self.eventsOf(book) {
            created = try await book.engine.createTrigger(segment: segment.id, onEnter: true, onExit: false, includeExisting: true)
        }
        let trigger = try #require(created)
        #expect(trigger.members.count == 2, "after include_existing the baseline is the current membership")
        #expect(Set(loud.map(\.email)) == ["ana@example.com", "dewi@example.com"])
        #expect(loud.count == 2)
        #expect(loud.allSatisfy { $0.type == "enter" && $0.trigger == trigger.id && $0.segment == segment.id && $0.cause == "triggers.create" })
        // The members are now in its baseline: rewriting them fires nothing more.
        let after = try await Self.eventsOf(book) { try await book.seed([["email": "ana@example.com", "labels": ["vip"]]]) }
        #expect(after.isEmpty)
        // Only-exit trigger with include_existing records nothing for existing members.
        let exitOnly = try await Self.eventsOf(book) {
            _ = try await book.engine.createTrigger(segment: segment.id, onEnter: false, onExit: true, includeExisting: true)
        }
        #expect(exitOnly.isEmpty)
    }

    // MARK: Restart

    @Test(arguments: Backend.allCases) func baselinesSurviveRestart(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        let (_, clockTrigger) = try await Self.trigger(book, [engagement("open", "within_last", days(30))], name: "Recent")
        try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
        let lastBefore = try await book.engine.lastCursor()
        #expect(lastBefore == 1)

        try book.restart()
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        #expect(engine.triggers().map(\.id) == [trigger.id, clockTrigger.id])
        #expect(engine.triggers().map(\.members.count) == [3, 2])
        #expect(try await engine.lastCursor() == lastBefore)
        // A restart fires nothing by itself; neither does a clock tick at the same time, nor
        // re-writing the same values.
        #expect(try await engine.reevaluateClock() == 0)
        try await book.seed([
            ["email": "ana@example.com", "labels": ["vip"]], ["email": "citra@example.com", "labels": ["vip"]],
            ["email": "dewi@example.com", "add_labels": ["vip"]],
        ])
        try await book.record([("ana@example.com", "open", TimeText().stamp(TestBook.start - 10 * TestBook.day))])
        #expect(try await engine.lastCursor() == lastBefore)

        // A later real transition fires, with the next cursor.
        let got = try await Self.eventsOf(book) { try await book.seed([["email": "dewi@example.com", "remove_labels": ["vip"]]]) }
        #expect(Self.seen(got) == [Seen(type: "exit", email: "dewi@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        #expect(got.first?.cursor == lastBefore + 1)

        // Restart again after a clock-driven change: still nothing by itself.
        book.clock.advance(days: 5)  // budi's open is 34 days old, ana's 15
        #expect(try await engine.reevaluateClock() == 1)
        let afterClock = try await engine.lastCursor()
        try book.restart()
        #expect(try await book.engine.reevaluateClock() == 0)
        #expect(try await book.engine.lastCursor() == afterClock)
    }

    @Test(arguments: Backend.allCases) func baselineOfADeletedContactIsNotConfusedWithANewOne(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        _ = try await Self.trigger(book, [filter("label", "contains", "vip")])
        _ = try await book.engine.delete(emails: ["ana@example.com"])
        try book.restart()
        // A different contact created after the restart takes a new slot: it enters normally.
        let got = try await Self.eventsOf(book) { try await book.seed([["email": "eko@example.com", "labels": ["vip"]]]) }
        #expect(got.map(\.email) == ["eko@example.com"])
        #expect(book.engine.triggers().first?.members.count == 2)
    }

    // MARK: Rule edits and deletion

    @Test(arguments: Backend.allCases) func ruleEditRebaselinesSilentlyAndReportsTheTriggers(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let (segment, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        let other = try await book.engine.createSegment(name: "Other", filters: [filter("label", "contains", "newsletter")])
        let otherTrigger = try await book.engine.createTrigger(segment: other.id, onEnter: true, onExit: true, includeExisting: false)

        var rebaselined: [Int64] = []
        let silent = try await Self.eventsOf(book) {
            // From {ana, dewi} to {budi}: two would-be exits and one enter, none fired.
            rebaselined = try await book.engine.updateSegmentAndTriggers(id: segment.id, filters: [filter("label", "contains", "newsletter")]).rebaselined
        }
        #expect(silent.isEmpty, "a rule edit fired \(Self.seen(silent))")
        #expect(rebaselined == [trigger.id])
        let edited = try #require(book.engine.triggers().first { $0.id == trigger.id })
        #expect(edited.members.count == 1)
        #expect(book.engine.triggers().first { $0.id == otherTrigger.id }?.members.count == 1)

        // Edits that do not touch the rule re-baseline nothing.
        let renamed = try await book.engine.updateSegmentAndTriggers(id: segment.id, name: "Newsletter readers", description: "renamed")
        #expect(renamed.rebaselined.isEmpty)

        // The new rule is what fires from now on; the old one is forgotten.
        let got = try await Self.eventsOf(book) {
            try await book.seed([["email": "ana@example.com", "remove_labels": ["vip"]]])  // old rule only: nothing
            try await book.seed([["email": "citra@example.com", "add_labels": ["newsletter"]]])
        }
        #expect(Self.seen(got).filter { $0.trigger == trigger.id } == [
            Seen(type: "enter", email: "citra@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")
        ])

        // The new baseline survives a restart.
        try book.restart()
        #expect(book.engine.triggers().first { $0.id == trigger.id }?.members.count == 2)
        let none = try await Self.eventsOf(book) { try await book.seed([["email": "budi@example.com", "labels": ["newsletter"]]]) }
        #expect(none.isEmpty)
    }

    /// Baseline rows are keyed by chunk and deleted by key, so a re-baseline that empties a
    /// chunk and a trigger's deletion must remove exactly its rows, across chunks, and leave
    /// another trigger's rows alone.
    @Test func baselineRowsFollowMembersAcrossChunks() async throws {
        let book = try TestBook()
        // Slots 1 ... 10,000: members every 1,000 (slots 1, 1,001 ... 9,001) fall in chunks 0, 1
        // and 2 (4,096 slots each).
        _ = try await book.engine.upsert(contacts: (0..<10_000).map { i in
            ["email": .string("c\(i)@example.com"), "labels": i % 1_000 == 0 ? ["vip"] : ["other"]]
        })
        let rows = { (trigger: Int64) throws -> [Int64] in
            try storedColumn(at: book.path, "SELECT chunk FROM trigger_baseline WHERE trigger_id = ? ORDER BY chunk", [.integer(trigger)])
                .map { $0.int64 ?? -1 }
        }
        let (segment, watched) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        let (_, kept) = try await Self.trigger(book, [filter("label", "contains", "vip")], name: "Kept")
        #expect(try rows(watched.id) == [0, 1, 2])
        _ = try await book.engine.updateSegmentAndTriggers(id: segment.id, filters: [filter("label", "contains", "nobody")])
        #expect(try rows(watched.id) == [], "an empty baseline keeps no rows")
        _ = try await book.engine.updateSegmentAndTriggers(id: segment.id, filters: [filter("label", "contains", "vip")])
        #expect(try rows(watched.id) == [0, 1, 2])
        _ = try await book.engine.deleteTrigger(id: watched.id)
        #expect(try rows(watched.id) == [])
        #expect(try rows(kept.id) == [0, 1, 2])
        try book.restart()
        #expect(book.engine.triggers().map(\.id) == [kept.id])
        #expect(book.engine.triggers().first?.members.count == 10)
    }

    @Test func deletingASegmentWithTriggersNeedsForce() async throws {
        let book = try await Self.book()
        let (segment, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
        do {
            _ = try await book.engine.deleteSegment(id: segment.id)
            Issue.record("deleting a segment with triggers must be refused")
        } catch let error as SegmentError {
            #expect(error.kind == .conflict)
            #expect(error.message.contains("\(trigger.id)") && error.message.contains("force"), "\(error.message)")
        }
        #expect(book.engine.segments().count == 1 && book.engine.triggers().count == 1)

        _ = try await book.engine.deleteSegment(id: segment.id, force: true)
        #expect(book.engine.segments().isEmpty && book.engine.triggers().isEmpty)
        // Past events stay; nothing fires any more; the trigger is gone after a restart too.
        #expect(try await Self.events(book.engine).count == 1)
        let none = try await Self.eventsOf(book) { try await book.seed([["email": "budi@example.com", "add_labels": ["vip"]]]) }
        #expect(none.isEmpty)
        try book.restart()
        #expect(book.engine.triggers().isEmpty)
    }

    @Test func unknownSegmentAndTriggerAreNotFound() async throws {
        let book = try await Self.book()
        await #expect(throws: SegmentError.notFound("no segment with id 7")) {
            _ = try await book.engine.createTrigger(segment: 7, onEnter: true, onExit: false, includeExisting: false)
        }
        await #expect(throws: SegmentError.notFound("no trigger with id 3")) {
            _ = try await book.engine.deleteTrigger(id: 3)
        }
        let (_, trigger) = try await Self.trigger(book, [filter("label", "contains", "vip")])
        try await book.seed([["email": "citra@example.com", "add_labels": ["vip"]]])
        #expect(try await book.engine.deleteTrigger(id: trigger.id).id == trigger.id)
        // Its past events stay in the log; it fires no more.
        #expect(try await Self.events(book.engine).count == 1)
        try await book.seed([["email": "budi@example.com", "add_labels": ["vip"]]])
        #expect(try await Self.events(book.engine).count == 1)
        await #expect(throws: SegmentError.self) { _ = try await book.engine.deleteTrigger(id: trigger.id) }
    }

    // MARK: Reading, retention and cursors

    /// An engine on its own file with retention settings (the shared fixture uses defaults)
    /// and a trigger on the label `hot`, which `fire` gives.
    static func retentionBook(seconds: Double = 30 * 86_400, count: Int = 1_000_000, backend: Backend = .sqlite) async throws -> ConfiguredEngine {
        let book = try ConfiguredEngine(backend: backend) { config in
            config.eventRetentionSeconds = seconds
            config.eventRetentionCount = count
        }
        let segment = try await book.engine.createSegment(name: "Hot", filters: [filter("label", "contains", "hot")])
        _ = try await book.engine.createTrigger(segment: segment.id, onEnter: true, onExit: true, includeExisting: false)
        return book
    }

    /// `n` enter events, one write each.
    static func fire(_ engine: Engine, _ range: Range<Int>) async throws {
        for i in range { _ = try await engine.upsert(contacts: [["email": .string("c\(i)@example.com"), "labels": ["hot"]]]) }
    }

    @Test func readPagesWithLimitAndTriggerFilter() async throws {
        let book = try await Self.book()
        let (_, vip) = try await Self.trigger(book, [filter("label", "contains", "hot")])
        let (_, news) = try await Self.trigger(book, [filter("label", "contains", "news")], name: "News")
        for i in 0..<30 {
            _ = try await book.engine.upsert(contacts: [["email": .string("c\(i)@example.com"), "labels": i % 3 == 0 ? ["news"] : ["hot"]]])
        }
        var all: [TriggerEvent] = []
        var after: Int64 = 0
        for _ in 0..<100 {
            let page = try await book.engine.readEvents(after: after, limit: 7).events
            if page.isEmpty { break }
            #expect(page.count <= 7)
            all += page
            after = page.last!.cursor
        }
        #expect(all.map(\.cursor) == Array(1...30))
        let onlyNews = try await book.engine.readEvents(after: 0, limit: 4, triggers: [news.id]).events
        #expect(onlyNews.count == 4 && onlyNews.allSatisfy { $0.trigger == news.id })
        #expect(onlyNews.map(\.cursor) == [1, 4, 7, 10])
        let rest = try await book.engine.readEvents(after: onlyNews.last!.cursor, limit: 100, triggers: [news.id]).events
        #expect(rest.map(\.cursor) == [13, 16, 19, 22, 25, 28])
        #expect(try await book.engine.readEvents(after: 0, limit: 1000, triggers: [vip.id]).events.count == 20)
        #expect(try await book.engine.readEvents(after: 30, limit: 10).events.isEmpty)
    }

    @Test(arguments: Backend.allCases) func pruneByAgeThenAnOldCursorIsRefusedWithWhereToResume(_ backend: Backend) async throws {
        let book = try await Self.retentionBook(seconds: 10 * 86_400, backend: backend)
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        try await Self.fire(engine, 0..<5)  // cursors 1...5 at day 0
        book.clock.advance(days: 6)
        try await Self.fire(engine, 5..<8)  // cursors 6...8 at day 6
        #expect(try await engine.pruneEvents() == 0, "nothing is older than 10 days yet")
        book.clock.advance(days: 5)  // day 11: the first five are 11 days old
        #expect(try await engine.pruneEvents() == 5)
        #expect(try await engine.pruneEvents() == 0)

        for stale in [0, 1, 4] as [Int64] {
            let error = await #expect(throws: SegmentError.self) { _ = try await engine.readEvents(after: stale, limit: 10).events }
            #expect(error?.kind == .invalidParams)
            #expect(error?.path == "after")
            #expect(error?.message.contains("resume from 5") == true, "\(error?.message ?? "no error")")
            #expect(error?.message.contains("pruned") == true)
        }
        // Resuming where the error says gets every kept event.
        #expect(try await engine.readEvents(after: 5, limit: 10).events.map(\.cursor) == [6, 7, 8])
        #expect(try await engine.readEvents(after: 7, limit: 10).events.map(\.cursor) == [8])
        // A feed behind the retention horizon ends naming the oldest kept event.
        let feedError = await #expect(throws: EventsPruned.self) {
            var it = engine.eventFeed(after: 2).makeAsyncIterator()
            _ = try await it.next()
        }
        #expect(feedError?.prunedThrough == 5 && feedError?.oldestKept == 6 && feedError?.lastDelivered == 2)
        // Cursors keep counting after pruning; a cursor from the future is refused too.
        try await Self.fire(engine, 8..<9)
        #expect(try await engine.lastCursor() == 9)
        let future = await #expect(throws: SegmentError.self) { _ = try await engine.readEvents(after: 10, limit: 10).events }
        #expect(future?.kind == .invalidParams)
        #expect(future?.message == "cursor 10 is in the future: the newest event is 9")
    }

    @Test func pruneByAgeRemovesOnlyAPrefixWhenTheClockSteppedBack() async throws {
        let book = try await Self.retentionBook(seconds: 10 * 86_400)
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        book.clock.advance(days: 5)
        try await Self.fire(engine, 0..<2)  // cursors 1, 2 at day 5
        book.clock.advance(days: -5)
        try await Self.fire(engine, 2..<3)  // cursor 3 at day 0: the clock stepped back
        book.clock.advance(days: 12)  // day 12: cursor 3 is 12 days old, cursors 1 and 2 only 7
        #expect(try await engine.pruneEvents() == 0, "pruning cursor 3 would take the younger 1 and 2 with it")
        #expect(try await engine.readEvents(after: 0, limit: 10).events.map(\.cursor) == [1, 2, 3])
        book.clock.advance(days: 4)  // day 16: all three are older than 10 days
        #expect(try await engine.pruneEvents() == 3)
        #expect(try await engine.readEvents(after: 3, limit: 10).events.isEmpty)
    }

    @Test func pruneByCountKeepsTheNewest() async throws {
        let book = try await Self.retentionBook(count: 4)
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        try await Self.fire(engine, 0..<10)
        #expect(try await engine.pruneEvents() == 6)
        #expect(try await engine.readEvents(after: 6, limit: 100).events.map(\.cursor) == [7, 8, 9, 10])
        let error = await #expect(throws: SegmentError.self) { _ = try await engine.readEvents(after: 3, limit: 10).events }
        #expect(error?.message.contains("resume from 6") == true, "\(error?.message ?? "no error")")
        // Later events move the horizon on.
        try await Self.fire(engine, 10..<12)
        #expect(try await engine.pruneEvents() == 2)
        #expect(try await engine.readEvents(after: 8, limit: 100).events.map(\.cursor) == [9, 10, 11, 12])
    }

    @Test func idleClockTicksAndPrunesWriteNothing() async throws {
        let book = try await Self.book()
        _ = try await Self.trigger(book, [engagement("open", "within_last", days(30))])
        let version = book.engine.snapshot.version
        // The server ticks every minute: a tick with nothing to do must not count as a write
        // (`version` counts committed writes; clients compare it to cache answers).
        for _ in 0..<3 {
            book.clock.advance(seconds: 60)
            #expect(try await book.engine.reevaluateClock() == 0)
            #expect(try await book.engine.pruneEvents() == 0)
        }
        #expect(book.engine.snapshot.version == version, "idle clock ticks bumped the version")
    }

    @Test func emptyLogAcceptsZeroAndRefusesTheFuture() async throws {
        let book = try await Self.book()
        #expect(try await book.engine.lastCursor() == 0)
        #expect(try await book.engine.readEvents(after: 0, limit: 10).events.isEmpty)
        let error = await #expect(throws: SegmentError.self) { _ = try await book.engine.readEvents(after: 1, limit: 10).events }
        #expect(error?.message == "cursor 1 is in the future: the newest event is 0")
        #expect(try await book.engine.pruneEvents() == 0)
    }

    // MARK: The feed

    @Test(arguments: Backend.allCases) func feedReplaysThenGoesLiveWithoutGapOrDuplicate(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        _ = try await Self.trigger(book, [filter("label", "contains", "hot")])
        try await Self.fire(engine, 0..<40)
        // Through PostgreSQL each write is a few round trips: fewer of them keep the test
        // within its time limit on a loaded machine.
        let total = backend == .postgres ? 100 : 200
        let reader = Task { () -> [Int64] in
            var got: [Int64] = []
            for try await event in engine.eventFeed(after: 10) {
                got.append(event.cursor)
                if got.count == total - 10 { break }
            }
            return got
        }
        defer { reader.cancel() }
        try await Self.fire(engine, 40..<total)
        let got = try await Self.within(seconds: 20) { try await reader.value }
        #expect(got == Array(11...Int64(total)))
    }

    @Test func feedWithTriggerFilterSkipsOtherTriggers() async throws {
        let book = try await Self.book()
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        let (_, hot) = try await Self.trigger(book, [filter("label", "contains", "hot")])
        _ = try await Self.trigger(book, [filter("label", "contains", "cold")], name: "Cold")
        let reader = Task { () -> [TriggerEvent] in
            var got: [TriggerEvent] = []
            for try await event in engine.eventFeed(after: 0, triggers: [hot.id]) {
                got.append(event)
                if got.count == 10 { break }
            }
            return got
        }
        defer { reader.cancel() }
        for i in 0..<20 {
            _ = try await engine.upsert(contacts: [["email": .string("c\(i)@example.com"), "labels": i % 2 == 0 ? ["hot"] : ["cold"]]])
        }
        let got = try await Self.within(seconds: 20) { try await reader.value }
        #expect(got.allSatisfy { $0.trigger == hot.id })
        #expect(got.map(\.cursor) == stride(from: 1, through: 19, by: 2).map { Int64($0) })
    }

    /// A feed far behind the log reads it a page at a time: it is never dropped, however many
    /// events it is behind, and gets each exactly once.
    @Test func aFeedFarBehindReadsTheLogPageByPageAndIsNeverDropped() async throws {
        let book = try ConfiguredEngine { $0.subscriberPageSize = 5 }
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        let segment = try await engine.createSegment(name: "Hot", filters: [filter("label", "contains", "hot")])
        _ = try await engine.createTrigger(segment: segment.id, onEnter: true, onExit: true, includeExisting: false)
        var iterator = engine.eventFeed(after: 0).makeAsyncIterator()
        // 40 writes of 1 to 7 transitions each (166 events, 33 pages) before the first read.
        var total = 0
        for w in 0..<40 {
            let n = w % 7 + 1
            _ = try await engine.upsert(contacts: (0..<n).map { ["email": .string("w\(w)c\($0)@example.com"), "labels": ["hot"]] })
            total += n
        }
        var seen: [Int64] = []
        for _ in 0..<total {
            guard let event = try await iterator.next() else { break }
            seen.append(event.cursor)
        }
        #expect(seen == Array(1...Int64(total)))
        #expect(iterator.last == Int64(total))
        #expect(engine.eventHub.waiterCount == 0, "a feed that has not caught up never waits")
    }

    /// A caught-up feed waits on the hub (one waiter, no events held) and stops at once when
    /// its task is cancelled; a commit wakes it.
    @Test func aCaughtUpFeedWaitsOnTheHubAndEndsWhenCancelled() async throws {
        let book = try await Self.retentionBook()
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        try await Self.fire(engine, 0..<3)
        let seen = Collector()
        let feed = Task { for try await event in engine.eventFeed(after: 0) { seen.add(event) } }
        for _ in 0..<4_000 where engine.eventHub.waiterCount == 0 || seen.events.count < 3 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(engine.eventHub.waiterCount == 1 && seen.events.map(\.cursor) == [1, 2, 3])
        try await Self.fire(engine, 3..<4)
        for _ in 0..<4_000 where seen.events.count < 4 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(seen.events.map(\.cursor) == [1, 2, 3, 4])
        for _ in 0..<4_000 where engine.eventHub.waiterCount == 0 { try await Task.sleep(for: .milliseconds(5)) }
        feed.cancel()
        let ended = try await Self.within(seconds: 10) { await feed.result }
        #expect(throws: CancellationError.self) { try ended.get() }
        #expect(engine.eventHub.waiterCount == 0)
    }

    /// Retention removed events the feed had not read yet: the events it already held are
    /// handed out, then it ends naming the oldest cursor kept and where to resume.
    @Test func retentionOfTheNextCursorEndsTheFeedNamingTheOldestKept() async throws {
        let book = try ConfiguredEngine { config in
            config.subscriberPageSize = 3
            config.eventRetentionCount = 4
        }
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        let segment = try await engine.createSegment(name: "Hot", filters: [filter("label", "contains", "hot")])
        _ = try await engine.createTrigger(segment: segment.id, onEnter: true, onExit: true, includeExisting: false)
        try await Self.fire(engine, 0..<10)
        var iterator = engine.eventFeed(after: 0).makeAsyncIterator()
        #expect(try await iterator.next()?.cursor == 1)  // the feed now holds the page 1...3
        #expect(try await engine.pruneEvents() == 6)  // keeps 7...10
        #expect(try await iterator.next()?.cursor == 2)
        #expect(try await iterator.next()?.cursor == 3)
        let error = await #expect(throws: EventsPruned.self) { _ = try await iterator.next() }
        #expect(error?.lastDelivered == 3 && error?.prunedThrough == 6 && error?.oldestKept == 7)
        #expect(error?.description.contains("the oldest cursor still kept is 7") == true, "\(error.map(String.init(describing:)) ?? "")")
        #expect(error?.description.contains("after: 6") == true)
        // Resuming where it says gets every kept event.
        var resumed = engine.eventFeed(after: 6).makeAsyncIterator()
        var rest: [Int64] = []
        for _ in 0..<4 { if let event = try await resumed.next() { rest.append(event.cursor) } }
        #expect(rest == [7, 8, 9, 10])

        // Retention that removed every event: nothing is kept, resume from the pruned cursor.
        var behind = engine.eventFeed(after: 6).makeAsyncIterator()
        #expect(try await behind.next()?.cursor == 7)
        book.clock.advance(days: 31)
        #expect(try await engine.pruneEvents() == 4)
        #expect(try await behind.next()?.cursor == 8)  // 8 and 9 were read with 7
        #expect(try await behind.next()?.cursor == 9)
        let empty = await #expect(throws: EventsPruned.self) { _ = try await behind.next() }
        #expect(empty?.oldestKept == nil && empty?.prunedThrough == 10 && empty?.lastDelivered == 9)
        #expect(empty?.description.contains("no event is kept") == true)
    }

    /// Writes land while feeds read: one catching up from the start of the log through many
    /// tiny pages, one filtered, one live. Each sees its events exactly once, in cursor
    /// order, whatever commits while it moves from reading the log to waiting for new events.
    @Test func feedsHandOverFromTheLogToLiveUnderConcurrentWrites() async throws {
        let book = try ConfiguredEngine { $0.subscriberPageSize = 4 }
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        let hot = try await engine.createTrigger(
            segment: try await engine.createSegment(name: "Hot", filters: [filter("label", "contains", "hot")]).id,
            onEnter: true, onExit: true, includeExisting: false)
        _ = try await engine.createTrigger(
            segment: try await engine.createSegment(name: "Cold", filters: [filter("label", "contains", "cold")]).id,
            onEnter: true, onExit: false, includeExisting: false)
        // Two writers, 60 writes each of 1 to 5 contacts, alternating hot and cold.
        let writers = (0..<2).map { writer in
            Task {
                for w in 0..<60 {
                    let label: JSONValue = w % 3 == 0 ? "cold" : "hot"
                    _ = try await engine.upsert(contacts: (0..<(w % 5 + 1)).map {
                        ["email": .string("p\(writer)w\(w)c\($0)@example.com"), "labels": [label]]
                    })
                    if w % 10 == 0 { await Task.yield() }
                }
            }
        }
        let live = try await engine.lastCursor()
        let specs: [(after: Int64, only: Set<Int64>?)] = [(0, nil), (0, [hot.id]), (live, nil)]
        let collected = specs.map { _ in Collector() }
        let feeds = zip(specs, collected).map { spec, sink in
            Task {
                for try await event in engine.eventFeed(after: spec.after, triggers: spec.only) { sink.add(event) }
            }
        }
        defer { for feed in feeds { feed.cancel() } }
        for writer in writers { try await writer.value }
        let log = try await engine.readEvents(after: 0, limit: 10_000).events
        let expected = [log, log.filter { $0.trigger == hot.id }, log.filter { $0.cursor > live }]
        #expect(log.count > 60 && expected[1].count < log.count && !expected[2].isEmpty)
        for (sink, want) in zip(collected, expected) {
            // Bounded wait for each feed to have read everything (20 s; normally milliseconds).
            for _ in 0..<4_000 where sink.events.count < want.count { try await Task.sleep(for: .milliseconds(5)) }
        }
        for feed in feeds { feed.cancel() }
        for feed in feeds { _ = await feed.result }
        for (sink, want) in zip(collected, expected) {
            let got = sink.events
            #expect(got.map(\.cursor) == want.map(\.cursor), "\(got.count) of \(want.count) events")
            #expect(got == want)
        }
    }

    struct FeedTimeout: Error, CustomStringConvertible {
        let seconds: Double
        var description: String { "timed out after \(seconds) s" }
    }

    /// Runs `body`, failing with `TimeoutError` if it takes longer than `seconds`.
    static func within<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .seconds(seconds))
                throw FeedTimeout(seconds: seconds)
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}

/// Events a feed's task has read, for the test to look at while the feed runs.
final class Collector: Sendable {
    private let stored = Mutex<[TriggerEvent]>([])
    func add(_ event: TriggerEvent) { stored.withLock { $0.append(event) } }
    var events: [TriggerEvent] { stored.withLock { $0 } }
}

/// An engine on a fresh file with its own configuration and a hand-moved clock (`TestBook`
/// opens engines with the default configuration). Closed and removed when released: keep the
/// fixture alive (use `book.engine`, not a copy of it, or `withExtendedLifetime`).
final class ConfiguredEngine: Sendable {
    let clock = ManualTime(TestBook.start)
    let directory: String
    let engine: Engine

    init(backend: Backend = .sqlite, _ configure: (inout Engine.Configuration) -> Void) throws {
        directory = NSTemporaryDirectory() + "segment-engine-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var config = Engine.Configuration(databasePath: directory + "/t.sqlite", clock: clock)
        if backend == .postgres {
            let url = try TestPostgres.shared().url
            config.name = "r" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
            config.openStore = { book, providers in try PostgresBookStore(url: url, book: book, providers: providers, logger: TestBook.quietLogger) }
            config.fleet = FleetSettings()
        }
        configure(&config)
        engine = try Engine(configuration: config, registry: TestBook.registry(), logger: TestBook.quietLogger)
    }

    deinit {
        try? engine.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
