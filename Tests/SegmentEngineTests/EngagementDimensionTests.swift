import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The engagement dimension: `before`, `after`, `between`, `within_last`, `not_within_last`,
/// `never`, `ever` against an injected clock (now is 2026-06-01T12:00:00Z).
@Suite(.ownThreads) struct EngagementDimensionTests {
    static let recent = "recent@example.com", edge = "edge@example.com", justOut = "just-out@example.com"
    static let old = "old@example.com", older = "older@example.com", never = "never@example.com"
    static let sendOnly = "send-only@example.com"

    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await book.seed([recent, edge, justOut, old, older, never, sendOnly].map { ["email": .string($0)] })
        let result = try await book.record([
            (recent, "open", "2026-05-31T12:00:00Z"),  // now − 1 day exactly
            (recent, "click", "2026-05-31T12:00:00Z"),
            (recent, "send", "2026-05-30T12:00:00Z"),
            (edge, "open", "2026-05-02T12:00:00Z"),  // now − 30 days exactly
            (justOut, "open", "2026-05-02T11:59:59Z"),  // one second earlier
            (old, "open", "2026-01-31T00:00:00Z"),
            (old, "send", "2026-01-31T23:59:59Z"),
            (older, "open", "2026-01-30T23:59:59Z"),
            (sendOnly, "send", "2026-02-01T00:00:00Z"),
        ])
        #expect(result["recorded"] == 9)
        return book
    }

    static let cases: [FilterCase] = [
        FilterCase("within_last includes the boundary now − N×24h", engagement("open", "within_last", days(30)), [recent, edge]),
        FilterCase("within_last 1 day at its boundary", engagement("open", "within_last", days(1)), [recent]),
        FilterCase(
            "not_within_last includes never", engagement("open", "not_within_last", days(30)), [justOut, old, older, never, sendOnly]),
        FilterCase("never", engagement("open", "never"), [never, sendOnly]),
        FilterCase("ever", engagement("open", "ever"), [recent, edge, justOut, old, older]),
        FilterCase("before a date: earlier than the day's start", engagement("open", "before", "2026-01-31"), [older]),
        FilterCase("before a timestamp is exclusive", engagement("open", "before", "2026-05-02T12:00:00Z"), [justOut, old, older]),
        FilterCase("before never matches a contact without the event", engagement("open", "before", "2030-01-01"),
                   [recent, edge, justOut, old, older]),
        FilterCase("after a date: later than the day's end", engagement("open", "after", "2026-01-31"), [recent, edge, justOut]),
        FilterCase("after the day before", engagement("open", "after", "2026-01-30"), [old, recent, edge, justOut]),
        FilterCase("after a timestamp is exclusive", engagement("open", "after", "2026-05-02T11:59:59Z"), [recent, edge]),
        FilterCase("between dates: d1's start to d2's end", engagement("open", "between", ["2026-01-30", "2026-01-31"]), [old, older]),
        FilterCase("between dates over months", engagement("open", "between", ["2026-01-31", "2026-05-02"]), [old, justOut, edge]),
        FilterCase(
            "between timestamps is inclusive", engagement("open", "between", ["2026-05-02T11:59:59Z", "2026-05-02T12:00:00Z"]),
            [justOut, edge]),
        FilterCase(
            "between a time and the end of that same day", engagement("open", "between", ["2026-05-02T12:00:00Z", "2026-05-02"]), [edge]),
        FilterCase("send between one day", engagement("send", "between", ["2026-01-31", "2026-01-31"]), [old]),
        FilterCase("send after a date", engagement("send", "after", "2026-01-31"), [recent, sendOnly]),
        FilterCase("send never", engagement("send", "never"), [edge, justOut, older, never]),
        FilterCase("click never", engagement("click", "never"), [edge, justOut, old, older, never, sendOnly]),
        FilterCase("click within_last a year", engagement("click", "within_last", days(365)), [recent]),
        FilterCase("click not_within_last a year", engagement("click", "not_within_last", days(365)),
                   [edge, justOut, old, older, never, sendOnly]),
    ]

    @Test(arguments: cases)
    func operators(_ c: FilterCase) async throws {
        try check(c, on: try await Self.book())
    }

    @Test func anOlderEventDoesNotMoveTheTimestampBack() async throws {
        let book = try await Self.book()
        let result = try await book.record([
            (Self.recent, "open", "2026-01-01T00:00:00Z"),  // older: ignored
            (Self.recent, "open", "2026-05-31T12:00:00Z"),  // the same: ignored
            (Self.edge, "open", "2026-05-20T08:00:00Z"),  // newer: moves forward
        ])
        #expect(result["recorded"] == 1)
        #expect(result["unchanged"] == 2)
        #expect(try book.contact(Self.recent)["engagement"]?["last_open_at"] == "2026-05-31T12:00:00Z")
        #expect(try book.contact(Self.edge)["engagement"]?["last_open_at"] == "2026-05-20T08:00:00Z")
        #expect(try book.contact(Self.never)["engagement"] == JSONValue.object(["last_open_at": .null, "last_click_at": .null, "last_send_at": .null]))
        #expect(try book.emails([engagement("open", "before", "2026-02-01")]) == [Self.old, Self.older])
    }

    @Test func badEventsFailAloneWithTheirIndex() async throws {
        let book = try await Self.book()
        let result = try await book.record([
            ("nobody@example.com", "open", "2026-05-01T00:00:00Z"),
            (Self.never, "bounce", "2026-05-01T00:00:00Z"),
            (Self.never, "open", "yesterday"),
            (Self.never, "click", "2026-05-01T00:00:00Z"),
        ])
        #expect(result["recorded"] == 1)
        #expect(result["failed"]?.arrayValue?.compactMap { $0["index"]?.intValue } == [0, 1, 2])
        #expect(try book.emails([engagement("click", "ever")]) == [Self.recent, Self.never])
    }

    @Test func movingTheClockChangesRelativeAnswers() async throws {
        let book = try await Self.book()
        let within = [engagement("open", "within_last", days(30))]
        let notWithin = [engagement("open", "not_within_last", days(30))]
        let rule = try book.engine.compile(filters: .array(within))
        #expect(rule.isTimeDependent)
        #expect(try book.emails(.array(within)) == [Self.recent, Self.edge])

        book.clock.advance(seconds: 1)  // the edge contact falls out
        #expect(try book.emails(.array(within)) == [Self.recent])
        #expect(book.engine.count(rule: rule, audience: .all).matched == 1)
        #expect(try book.emails(.array(notWithin)).contains(Self.edge))

        book.clock.advance(days: 29)  // now − 30 days is one second after recent's open
        #expect(try book.emails(.array(within)) == [])
        #expect(try book.count(.array(notWithin), audience: .all).matched == 7)

        book.clock.set(TestBook.start - 2 * TestBook.day)  // the clock going back brings both in again
        #expect(try book.emails(.array(within)) == [Self.recent, Self.edge, Self.justOut])
    }
}
