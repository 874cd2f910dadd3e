import Foundation
import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// Correcting data ("one mistaken import lasts forever"): fields.rename/delete,
/// labels.rename/delete, engagement.reset and the future-time refusal, contacts.list. Each is
/// an ordinary write: persisted, counted in `version`, seen by triggers exactly like any other
/// write, and nothing else fires.
@Suite(.timeLimit(.minutes(1)), .ownThreads) struct CorrectionTests {
    typealias Seen = TriggerTests.Seen

    /// Runs a provider method on the engine.
    static func call(_ book: TestBook, _ name: String, _ params: JSONValue) async throws -> JSONValue {
        try await book.engine.run(try book.method(name), params: params)
    }

    static func refused(
        _ book: TestBook, _ name: String, _ params: JSONValue, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> SegmentError? {
        let version = book.engine.snapshot.version
        let error = await #expect(throws: SegmentError.self, sourceLocation: sourceLocation) { try await call(book, name, params) }
        #expect(book.engine.snapshot.version == version, "a refused call writes nothing", sourceLocation: sourceLocation)
        return error
    }

    static func ids(_ reply: JSONValue?) -> [Int64] { reply?.arrayValue?.compactMap { $0["id"]?.intValue } ?? [] }

    // MARK: fields.rename

    @Test func fieldRenameKeepsValuesRewritesRulesAndFiresNothing() async throws {
        let book = try await TriggerTests.book()
        let jakarta: JSONValue = [field("city", "equals", "jakarta")]
        let grouped: JSONValue = [["any": [field("city", "equals", "bandung"), filter("label", "contains", "vip")]]]
        let (segment, trigger) = try await TriggerTests.trigger(book, jakarta)
        let other = try await book.engine.createSegment(name: "Bandung or VIP", filters: grouped)
        let untouched = try await book.engine.createSegment(name: "VIP", filters: [filter("label", "contains", "vip")])
        let version = book.engine.snapshot.version

        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "fields.rename", ["name": "city", "to": "town"])
            #expect(reply["name"] == "town" && reply["type"] == "text")
            #expect(Self.ids(reply["segments"]) == [segment.id, other.id])
        }
        #expect(got.isEmpty, "a rename keeps every rule's answer: \(got)")
        #expect(book.engine.snapshot.version == version + 1)
        #expect(try book.contact("ana@example.com")["fields"] == ["town": "Jakarta", "lifetime_value": 2400])
        #expect(try book.engine.segment(id: segment.id).filters == [field("town", "equals", "jakarta")])
        #expect(try book.engine.segment(id: other.id).filters == [["any": [field("town", "equals", "bandung"), filter("label", "contains", "vip")]]])
        #expect(try book.engine.segment(id: untouched.id).updatedAt == untouched.updatedAt)
        #expect(try book.engine.count(segment: segment.id, audience: .all).matched == 1)
        #expect(try book.engine.count(segment: other.id, audience: .all).matched == 3)
        #expect(book.engine.triggers().first?.members.count == 1)

        // Persisted: the definition, every document, the rules; the trigger follows the new name.
        try book.restart()
        #expect(try book.contact("budi@example.com")["fields"] == ["town": "Bandung", "lifetime_value": .null])
        #expect(try book.engine.segment(id: segment.id).filters == [field("town", "equals", "jakarta")])
        let list = try await Self.call(book, "fields.list", [:])
        #expect(list.arrayValue?.compactMap { $0["name"]?.stringValue } == ["email", "name", "created_at", "town", "lifetime_value"])
        let later = try await TriggerTests.eventsOf(book) { try await book.seed([["email": "budi@example.com", "fields": ["town": "JAKARTA"]]]) }
        #expect(TriggerTests.seen(later) == [Seen(type: "enter", email: "budi@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
        // The old name is free again, and unknown in filters.
        #expect(throws: SegmentError.self) { try book.count([field("city", "is_empty")]) }
    }

    @Test func fieldRenameRefusals() async throws {
        let book = try await TriggerTests.book()
        #expect(try await Self.refused(book, "fields.rename", ["name": "city", "to": "lifetime_value"])?.kind == .conflict)
        #expect(try await Self.refused(book, "fields.rename", ["name": "city", "to": "email"])?.kind == .conflict)
        #expect(try await Self.refused(book, "fields.rename", ["name": "name", "to": "full_name"])?.kind == .conflict)
        #expect(try await Self.refused(book, "fields.rename", ["name": "zone", "to": "area"])?.kind == .notFound)
        let bad = try await Self.refused(book, "fields.rename", ["name": "city", "to": " town"])
        #expect(bad?.kind == .invalidParams && bad?.path == "to")
        #expect(try await Self.refused(book, "fields.rename", ["name": "city", "into": "town"])?.path == "into")
    }

    // MARK: fields.delete

    @Test func fieldDeleteIsRefusedWhileARuleNamesItThenForcedFlagsTheRule() async throws {
        let book = try await TriggerTests.book()
        let (segment, trigger) = try await TriggerTests.trigger(book, [field("city", "equals", "jakarta")])
        let error = try await Self.refused(book, "fields.delete", ["name": "city"])
        #expect(error?.kind == .conflict)
        #expect(error?.message.contains("segment \(segment.id) \"Watched\"") == true, "\(error?.message ?? "")")

        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "fields.delete", ["name": "city", "force": true])
            #expect(reply["deleted"] == "city" && reply["cleared"] == 2)
            #expect(Self.ids(reply["segments"]) == [segment.id])
            #expect(reply["deleted_triggers"] == [.int(trigger.id)])
        }
        #expect(got.isEmpty, "the trigger is deleted with the field, silently: \(got)")
        #expect(book.engine.triggers().isEmpty)
        let kept = try book.engine.segment(id: segment.id)
        #expect(kept.filters == [field("city", "equals", "jakarta")] && kept.reviewNeeded)
        // The rule now fails with an error naming the field: never a wider audience.
        let count = #expect(throws: SegmentError.self) { try book.engine.count(segment: segment.id) }
        #expect(count?.path == "filters[0].field")
        #expect(try book.contact("ana@example.com")["fields"] == ["lifetime_value": 2400])

        // Persisted, and the start-up does not trip over the broken rule.
        try book.restart()
        #expect(try book.contact("ana@example.com")["fields"] == ["lifetime_value": 2400])
        #expect(try book.engine.segment(id: segment.id).reviewNeeded)
        #expect(book.engine.triggers().isEmpty)
        // Defining the field again brings the rule back, with no values.
        try await book.define("city", "text")
        #expect(try book.engine.count(segment: segment.id, audience: .all).matched == 0)
    }

    @Test func fieldDeleteWithoutRulesClearsEveryValue() async throws {
        let book = try await TriggerTests.book()
        let (segment, trigger) = try await TriggerTests.trigger(book, [field("lifetime_value", "greater_than", 1000)])
        let reply = try await Self.call(book, "fields.delete", ["name": "city"])
        #expect(reply["segments"] == [] && reply["deleted_triggers"] == [])
        #expect(book.engine.triggers().map(\.id) == [trigger.id])
        #expect(try book.engine.count(segment: segment.id, audience: .all).matched == 1)
        try book.restart()
        #expect(try book.contact("budi@example.com")["fields"] == ["lifetime_value": .null])
        // The remaining field still reads and writes through its moved column.
        try await book.seed([["email": "budi@example.com", "fields": ["lifetime_value": 5000]]])
        #expect(try book.emails([field("lifetime_value", "greater_than", 1000)]) == ["ana@example.com", "budi@example.com"])
        #expect(try await Self.refused(book, "fields.delete", ["name": "city"])?.kind == .notFound)
        #expect(try await Self.refused(book, "fields.delete", ["name": "created_at"])?.kind == .conflict)
    }

    // MARK: labels.rename

    @Test func labelRenameKeepsEveryRulesAnswerAndFiresNothing() async throws {
        let book = try await TriggerTests.book()
        let (segment, trigger) = try await TriggerTests.trigger(book, [filter("label", "contains", "vip")])
        let grouped = try await book.engine.createSegment(
            name: "Either", filters: [["any": [filter("label", "contains_any", [" VIP", "newsletter"]), field("city", "is_empty")]]])
        let none = try await book.engine.createSegment(name: "Not VIP", filters: [filter("label", "not_contains", ["Vip"])])
        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "labels.rename", ["name": "Vip", "to": "VIP-2024"])
            #expect(reply["name"] == "VIP-2024" && reply["contacts"] == 2 && reply["merged"] == false)
            #expect(Self.ids(reply["segments"]) == [segment.id, grouped.id, none.id])
        }
        #expect(got.isEmpty, "\(got)")
        #expect(try book.engine.segment(id: segment.id).filters == [filter("label", "contains", "VIP-2024")])
        #expect(try book.engine.segment(id: grouped.id).filters
            == [["any": [filter("label", "contains_any", ["VIP-2024", "newsletter"]), field("city", "is_empty")]]])
        #expect(try book.engine.segment(id: none.id).filters == [filter("label", "not_contains", ["VIP-2024"])])
        #expect(try book.engine.count(segment: segment.id, audience: .all).matched == 2)
        #expect(try book.engine.count(segment: none.id, audience: .all).matched == 2)
        #expect(try book.contact("dewi@example.com")["labels"] == ["VIP-2024"])

        try book.restart()
        #expect(try book.contact("ana@example.com")["labels"] == ["VIP-2024"])
        let labels = try await Self.call(book, "labels.list", [:])
        #expect(labels.arrayValue?.compactMap { $0["name"]?.stringValue } == ["newsletter", "VIP-2024"])
        let later = try await TriggerTests.eventsOf(book) { try await book.seed([["email": "citra@example.com", "add_labels": ["vip-2024"]]]) }
        #expect(TriggerTests.seen(later) == [Seen(type: "enter", email: "citra@example.com", trigger: trigger.id, segment: segment.id, cause: "contacts.upsert")])
    }

    @Test func labelRenameAcrossCaseOnlyChangesTheSpelling() async throws {
        let book = try await TriggerTests.book()
        let (segment, _) = try await TriggerTests.trigger(book, [filter("label", "contains", "vip")])
        let version = book.engine.snapshot.version
        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "labels.rename", ["name": "vip", "to": "VIP"])
            #expect(reply["name"] == "VIP" && reply["merged"] == false && Self.ids(reply["segments"]) == [segment.id])
        }
        #expect(got.isEmpty)
        #expect(book.engine.snapshot.version == version + 1)
        #expect(try book.engine.segment(id: segment.id).filters == [filter("label", "contains", "VIP")])
        try book.restart()
        #expect(try book.contact("ana@example.com")["labels"] == ["VIP"])
        #expect(try book.engine.count(segment: segment.id, audience: .all).matched == 2)
    }

    @Test func labelRenameOntoAnExistingLabelMergesAndFiresLikeAnyWrite() async throws {
        let book = try await TriggerTests.book()
        try await book.seed([["email": "ana@example.com", "add_labels": ["newsletter"]]])
        let (vip, vipTrigger) = try await TriggerTests.trigger(book, [filter("label", "contains", "vip")], name: "VIP")
        let (news, newsTrigger) = try await TriggerTests.trigger(book, [filter("label", "contains", "newsletter")], name: "News")
        let both = try await book.engine.createSegment(name: "Both", filters: [filter("label", "contains", ["vip", "Newsletter"])])
        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "labels.rename", ["name": "newsletter", "to": "Vip"])
            #expect(reply["name"] == "vip" && reply["contacts"] == 3 && reply["merged"] == true)
            #expect(Self.ids(reply["segments"]) == [news.id, both.id])
        }
        // Budi now carries vip (enters VIP); News now means vip, which dewi carries.
        #expect(Set(TriggerTests.seen(got).map(\.description)) == Set([
            Seen(type: "enter", email: "budi@example.com", trigger: vipTrigger.id, segment: vip.id, cause: "labels.rename"),
            Seen(type: "enter", email: "dewi@example.com", trigger: newsTrigger.id, segment: news.id, cause: "labels.rename"),
        ].map(\.description)))
        #expect(try book.engine.segment(id: both.id).filters == [filter("label", "contains", ["vip"])])
        #expect(try book.contact("ana@example.com")["labels"] == ["vip"])
        try book.restart()
        #expect(try book.contact("budi@example.com")["labels"] == ["vip"])
        #expect(try book.contact("ana@example.com")["labels"] == ["vip"])
        #expect(book.engine.triggers().map(\.members.count) == [3, 3])
        let labels = try await Self.call(book, "labels.list", [:])
        #expect(labels.arrayValue?.compactMap { $0["name"]?.stringValue } == ["vip"])
    }

    @Test func labelRenameRefusals() async throws {
        let book = try await TriggerTests.book()
        #expect(try await Self.refused(book, "labels.rename", ["name": "gold", "to": "silver"])?.kind == .notFound)
        #expect(try await Self.refused(book, "labels.rename", ["name": "vip", "to": "  "])?.path == "to")
        #expect(try await Self.refused(book, "labels.rename", ["name": "vip"])?.path == "to")
    }

    // MARK: labels.delete

    @Test func labelDeleteIsRefusedWhileARuleNamesItThenForcedTheCarriersLeave() async throws {
        let book = try await TriggerTests.book()
        let (segment, trigger) = try await TriggerTests.trigger(book, [["any": [filter("label", "contains_any", ["VIP"])]]])
        let error = try await Self.refused(book, "labels.delete", ["name": "vip"])
        #expect(error?.kind == .conflict && error?.message.contains("segment \(segment.id) \"Watched\"") == true)
        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "labels.delete", ["name": "VIP", "force": true])
            #expect(reply["deleted"] == "vip" && reply["contacts"] == 2 && Self.ids(reply["segments"]) == [segment.id])
        }
        #expect(Set(TriggerTests.seen(got).map(\.description)) == Set(["ana@example.com", "dewi@example.com"].map {
            Seen(type: "exit", email: $0, trigger: trigger.id, segment: segment.id, cause: "labels.delete").description
        }))
        let kept = try book.engine.segment(id: segment.id)
        #expect(kept.reviewNeeded && kept.filters == [["any": [filter("label", "contains_any", ["VIP"])]]])
        #expect(try book.engine.count(segment: segment.id, audience: .all).matched == 0)
        try book.restart()
        #expect(try book.contact("ana@example.com")["labels"] == [])
        #expect(try book.contact("budi@example.com")["labels"] == ["newsletter"])
        #expect(book.engine.triggers().map(\.members.count) == [0])
        // An unused label goes without force.
        let reply = try await Self.call(book, "labels.delete", ["name": "newsletter"])
        #expect(reply["contacts"] == 1 && reply["segments"] == [])
        #expect(try await Self.call(book, "labels.list", [:]) == [])
    }

    /// Thousands of carriers: the stored keys are rewritten in one statement each, the
    /// documents a hundred per statement, and triggers re-check through the bulk path.
    @Test func correctionsOverManyContactsPersistExactly() async throws {
        let book = try TestBook()
        try await book.define("plan", "text")
        try await book.define("score", "number")
        let n = 3_000
        var contacts: [JSONValue] = []
        for i in 0..<n {
            let labels: JSONValue = i % 2 == 0 ? ["a"] : ["a", "b"]
            let plan: JSONValue = i % 3 == 0 ? "pro" : "free"
            let fields: JSONValue = ["plan": plan, "score": .double(Double(i) + 0.1)]
            contacts.append(["email": .string("c\(i)@example.com"), "labels": labels, "fields": fields])
        }
        try await book.seed(contacts)
        let (segment, trigger) = try await TriggerTests.trigger(book, [filter("label", "contains", "B")])
        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "labels.rename", ["name": "a", "to": "b"])
            #expect(reply["merged"] == true && reply["contacts"] == .int(Int64(n)))
        }
        #expect(got.count == n / 2 && got.allSatisfy { $0.type == "enter" && $0.trigger == trigger.id && $0.segment == segment.id })
        _ = try await Self.call(book, "fields.rename", ["name": "plan", "to": "tier"])
        _ = try await Self.call(book, "fields.delete", ["name": "score"])
        try book.restart()
        #expect(try book.emails([filter("label", "contains", "b")]).count == n)
        #expect(try book.emails([field("tier", "equals", "pro")]).count == n / 3)
        #expect(try book.contact("c2999@example.com")["fields"] == ["tier": "free"])
        #expect(try book.contact("c2999@example.com")["labels"] == ["b"])
        #expect(book.engine.triggers().first?.members.count == n)
    }

    // MARK: engagement

    @Test func engagementRecordRefusesTimesMoreThanFiveMinutesAhead() async throws {
        let book = try await TriggerTests.book()
        let text = TimeText()
        let reply = try await book.record([
            ("citra@example.com", "open", text.stamp(TestBook.start + 299)),
            ("citra@example.com", "click", text.stamp(TestBook.start + 301)),
            ("citra@example.com", "send", "2030-01-01"),
        ])
        #expect(reply["recorded"] == 1)
        let failed = reply["failed"]?.arrayValue ?? []
        #expect(failed.compactMap { $0["index"]?.intValue } == [1, 2])
        #expect(failed.first?["error"]?.stringValue?.hasPrefix("events[1].at: ") == true, "\(failed)")
        #expect(try book.contact("citra@example.com")["engagement"]?["last_click_at"] == .null)
        // The limit follows the server's clock.
        book.clock.advance(seconds: 10)
        #expect(try await book.record([("citra@example.com", "click", text.stamp(TestBook.start + 301))])["recorded"] == 1)
    }

    @Test func engagementResetClearsOneTypeAndFires() async throws {
        let book = try await TriggerTests.book()
        let (segment, trigger) = try await TriggerTests.trigger(book, [engagement("open", "within_last", days(30))])
        try await book.record([("ana@example.com", "click", TimeText().stamp(TestBook.start - TestBook.day))])
        let got = try await TriggerTests.eventsOf(book) {
            let reply = try await Self.call(book, "engagement.reset", ["email": "ANA@example.com", "type": "open"])
            #expect(reply == ["email": "ana@example.com", "type": "open", "cleared": .string(TimeText().stamp(TestBook.start - 10 * TestBook.day))])
        }
        #expect(TriggerTests.seen(got) == [Seen(type: "exit", email: "ana@example.com", trigger: trigger.id, segment: segment.id, cause: "engagement.reset")])
        // Nothing to clear: a null, and nothing fires.
        #expect(try await Self.call(book, "engagement.reset", ["email": "ana@example.com", "type": "open"])["cleared"] == .null)
        try book.restart()
        let engagement = try book.contact("ana@example.com")["engagement"]
        #expect(engagement?["last_open_at"] == .null && engagement?["last_click_at"] != .null)
        // An earlier open may now be recorded again.
        try await book.record([("ana@example.com", "open", TimeText().stamp(TestBook.start - 40 * TestBook.day))])
        #expect(try book.contact("ana@example.com")["engagement"]?["last_open_at"] == .string(TimeText().stamp(TestBook.start - 40 * TestBook.day)))
        #expect(try await Self.refused(book, "engagement.reset", ["email": "ana@example.com", "type": "bounce"])?.path == "type")
        #expect(try await Self.refused(book, "engagement.reset", ["email": "ghost@example.com", "type": "open"])?.kind == .notFound)
    }

    // MARK: contacts.list

    @Test func contactsListPagesInCreationOrderWithFiltersAndPrefix() async throws {
        let book = try await TriggerTests.book()
        let engine = book.engine
        func emails(_ page: JSONValue) -> [String] { page["items"]?.arrayValue?.compactMap { $0["email"]?.stringValue } ?? [] }
        let first = try engine.listContacts(after: nil, limit: 3, filters: nil, emailPrefix: nil)
        #expect(emails(first) == ["ana@example.com", "budi@example.com", "citra@example.com"])
        #expect(first["items"]?.arrayValue?.first == engine.contact(email: "ana@example.com"))
        let cursor = try #require(first["next"]?.intValue)
        // A contact deleted and one created between pages: the cursor still holds its place.
        _ = try await engine.delete(emails: ["dewi@example.com"])
        try await book.seed([["email": "eko@example.com"], ["email": "Adi@example.com"]])
        let second = try engine.listContacts(after: cursor, limit: 3, filters: nil, emailPrefix: nil)
        #expect(emails(second) == ["eko@example.com", "Adi@example.com"] && second["next"] == .null)
        // Exactly `limit` left: the last page still says null.
        #expect(try engine.listContacts(after: cursor, limit: 2, filters: nil, emailPrefix: nil)["next"] == .null)

        let vip = try engine.listContacts(after: nil, limit: 10, filters: [filter("label", "contains", "vip")], emailPrefix: nil)
        #expect(emails(vip) == ["ana@example.com"])
        #expect(emails(try engine.listContacts(after: nil, limit: 10, filters: nil, emailPrefix: "a")) == ["ana@example.com", "Adi@example.com"])
        #expect(emails(try engine.listContacts(after: nil, limit: 1, filters: nil, emailPrefix: "A"))  == ["ana@example.com"])
        #expect(emails(try engine.listContacts(after: 1_000, limit: 10, filters: nil, emailPrefix: nil)).isEmpty)
        let bad = #expect(throws: SegmentError.self) {
            try engine.listContacts(after: nil, limit: 10, filters: [filter("label", "contains", 3)], emailPrefix: nil)
        }
        #expect(bad?.path == "filters[0].value")
    }
}
