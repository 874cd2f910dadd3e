import Foundation
import SegmentCore
import SegmentEngine
import Testing
import WireJSON

/// Segment hygiene at the engine level (issue 6): every lint code on a minimal example and
/// quiet on good segments (the product's five examples among them), stale labels and unused
/// segments through the hand-moved clock, explain against an oracle, review_needed and usage.
@Suite struct LintExplainTests {
    static func codes(_ warnings: [LintWarning]) -> [String] { warnings.map(\.code) }

    /// A small realistic book: ShapesBook's ten contacts (labels newsletter and vip gained now).
    static func book() async throws -> TestBook {
        let book = try TestBook()
        try await ShapesBook.build(book)
        return book
    }


    /// Sari loses and regains `vip`, so the label is freshly gained and only `unused` is in question.
    static func regainVIP(_ book: TestBook) async throws {
        try await book.seed([["email": "sari@example.com", "remove_labels": ["vip"]]])
        try await book.seed([["email": "sari@example.com", "add_labels": ["vip"]]])
    }

    // MARK: The five product examples and other good segments

    @Test func theFiveProductExamplesProduceNoWarning() async throws {
        let book = try await Self.book()
        #expect(ShapesBook.shapes.count == 5)
        for shape in ShapesBook.shapes {
            #expect(book.engine.lint(filters: shape.filters, name: shape.name).isEmpty, "\(shape.name): \(book.engine.lint(filters: shape.filters, name: shape.name))")
            let stored = try await book.engine.createSegment(name: shape.name, filters: shape.filters)
            #expect(book.engine.lint(segment: stored).isEmpty, "\(shape.name) stored")
        }
        // The README's wording of the same five (its city filter comes second).
        let readme: [(String, JSONValue)] = [
            ("Jakarta-based active contacts", [filter("status", "equals", "active"), field("city", "equals", "jakarta")]),
            ("High-value at-risk customers", [field("lifetime_value", "greater_than", 1000), filter("funnel", "in", ["customer", "loyal_customer"]),
                                              engagement("open", "not_within_last", days(60))]),
        ]
        for (name, filters) in readme { #expect(book.engine.lint(filters: filters, name: name).isEmpty, "\(name)") }
        // Still quiet 60 days on (neither unused nor stale before 90 days).
        book.clock.advance(days: 60)
        for segment in book.engine.segments() { #expect(book.engine.lint(segment: segment).isEmpty, "\(segment.name) after 60 days") }
    }

    @Test func otherGoodSegmentsAreQuiet() async throws {
        let book = try await Self.book()
        let good: [(String, JSONValue)] = [
            ("Newsletter or VIP in Jakarta", [["any": [filter("label", "contains_any", ["newsletter", "vip"]), field("city", "contains", "jakarta")]]]),
            ("Pending sign-ups", [filter("status", "equals", "pending")]),
            ("Everyone but hard bounces who are VIP", [filter("label", "contains", ["VIP"])]),
            ("Contest winners 2026", [filter("label", "not_contains", "newsletter")]),
            ("Testing lab Jakarta", [field("city", "equals", "jakarta")]),
            ("Lost customers", [["dimension": "funnel", "lost": true]]),
        ]
        for (name, filters) in good {
            #expect(book.engine.lint(filters: filters, name: name).isEmpty, "\(name): \(book.engine.lint(filters: filters, name: name))")
        }
    }

    // MARK: Each code

    @Test func overlyBroadFiresOnNoFilterAndOnStatusActiveAlone() async throws {
        let book = try await Self.book()
        let broad: [JSONValue] = [
            [],
            [filter("status", "equals", "active")],
            [filter("status", "in", ["active"])],
            [filter("status", "equals", "active"), filter("status", "equals", "active")],
        ]
        for filters in broad {
            let warnings = book.engine.lint(filters: filters, name: "Everyone we can mail")
            #expect(warnings.map(\.code) == ["overly_broad"], "\(filters.serialized())")
            #expect(warnings.first?.path == "filters")
            #expect(warnings.first?.message.contains("not a segment") == true)
        }
        #expect(book.engine.lint(filters: [filter("status", "equals", "active"), filter("label", "contains", "vip")], name: "Active VIPs").isEmpty)
        #expect(book.engine.lint(filters: [filter("status", "in", ["active", "pending"])], name: "Reachable soon").isEmpty)
    }

    @Test func staleLabelFiresWhenNoContactCarriesIt() async throws {
        let book = try await Self.book()
        let one = book.engine.lint(filters: [filter("status", "equals", "active"), filter("label", "contains", "campaign-q1")], name: "Q1 campaign")
        #expect(one.map(\.code) == ["stale_label"])
        #expect(one.first?.path == "filters[1].value")
        #expect(one.first?.message.contains("\"campaign-q1\"") == true)
        // In a list only the missing label is reported; inside a group the path goes down to it.
        let list = book.engine.lint(filters: [filter("label", "contains", ["vip", "ghost"])], name: "VIP ghosts")
        #expect(list.map(\.code) == ["stale_label"] && list.first?.message.contains("ghost") == true)
        let grouped = book.engine.lint(
            filters: [["any": [filter("label", "contains", "vip"), filter("label", "contains_any", ["spring-sale"])]]], name: "VIP or spring")
        #expect(grouped.map(\.path) == ["filters[0].any[1].value"])
        // Case does not matter; a label carried only by deleted contacts is stale.
        #expect(book.engine.lint(filters: [filter("label", "contains", "NewsLetter")], name: "Readers").isEmpty)
        try await book.seed([["email": "solo@example.com", "labels": ["one-off"]]])
        #expect(book.engine.lint(filters: [filter("label", "contains", "one-off")], name: "One-off buyers").isEmpty)
        _ = try await book.engine.delete(emails: ["solo@example.com"])
        #expect(Self.codes(book.engine.lint(filters: [filter("label", "contains", "one-off")], name: "One-off buyers")) == ["stale_label"])
    }

    @Test func staleLabelFiresWhenNobodyGainedItFor90Days() async throws {
        let book = try await Self.book()
        let rule: JSONValue = [filter("label", "contains", "newsletter")]
        book.clock.advance(days: 89)
        #expect(book.engine.lint(filters: rule, name: "Readers").isEmpty)
        book.clock.advance(days: 2)  // 91 days since anyone gained it
        let warnings = book.engine.lint(filters: rule, name: "Readers")
        #expect(warnings.map(\.code) == ["stale_label"])
        #expect(warnings.first?.path == "filters[0].value")
        #expect(warnings.first?.message.contains("91 days") == true, "\(warnings.first?.message ?? "")")
        // Re-writing a label a contact already has is no gain; a new carrier is.
        try await book.seed([["email": "rina@example.com", "add_labels": ["newsletter"]]])
        #expect(Self.codes(book.engine.lint(filters: rule, name: "Readers")) == ["stale_label"])
        // The time of the last gain survives a restart.
        try book.restart()
        #expect(Self.codes(book.engine.lint(filters: rule, name: "Readers")) == ["stale_label"])
        try await book.seed([["email": "umar@example.com", "add_labels": ["Newsletter"]]])
        #expect(book.engine.lint(filters: rule, name: "Readers").isEmpty)
        try book.restart()
        #expect(book.engine.lint(filters: rule, name: "Readers").isEmpty)
    }

    @Test func staleLabelAndUnusedFollowTheConfiguredPeriods() async throws {
        let book = try ConfiguredEngine { $0.lint = LintSettings(staleLabelDays: 7, unusedDays: 14) }
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        _ = try await engine.upsert(contacts: [["email": "ana@example.com", "labels": ["flash-sale"]]])
        let segment = try await engine.createSegment(name: "Flash sale buyers", filters: [filter("label", "contains", "flash-sale")])
        book.clock.advance(days: 6)
        #expect(engine.lint(segment: engine.segments()[0]).isEmpty)
        book.clock.advance(days: 2)
        #expect(Self.codes(engine.lint(segment: engine.segments()[0])) == ["stale_label"])
        book.clock.advance(days: 7)
        #expect(Self.codes(engine.lint(segment: try engine.segment(id: segment.id))) == ["stale_label", "unused"])
    }

    @Test func unusedFiresAfter90DaysWithoutUse() async throws {
        let book = try await Self.book()
        let segment = try await book.engine.createSegment(name: "VIP customers", filters: ShapesBook.shapes[1].filters)
        book.clock.advance(days: 90)
        #expect(book.engine.lint(segment: try book.engine.segment(id: segment.id)).isEmpty, "exactly 90 days is not yet over 90")
        book.clock.advance(days: 1)
        // Keep the labels fresh so only `unused` is in question.
        try await Self.regainVIP(book)
        let warnings = book.engine.lint(segment: try book.engine.segment(id: segment.id))
        #expect(warnings.map(\.code) == ["unused"])
        #expect(warnings.first?.path == "id")
        #expect(warnings.first?.message.contains("91 days") == true, "\(warnings.first?.message ?? "")")
        // Lint of the rule alone (create/validate) never says unused.
        #expect(book.engine.lint(filters: segment.filters, name: segment.name).isEmpty)

        await book.engine.markUsed(segment: segment.id)
        let used = try book.engine.segment(id: segment.id)
        #expect(used.lastUsedAt == book.clock.now())
        #expect(book.engine.lint(segment: used).isEmpty)
        // Use is recorded at most once an hour.
        book.clock.advance(seconds: 1800)
        await book.engine.markUsed(segment: segment.id)
        #expect(try book.engine.segment(id: segment.id).lastUsedAt == used.lastUsedAt)
        book.clock.advance(seconds: 1800)
        await book.engine.markUsed(segment: segment.id)
        #expect(try book.engine.segment(id: segment.id).lastUsedAt == book.clock.now())
        // And it survives a restart.
        try book.restart()
        #expect(try book.engine.segment(id: segment.id).lastUsedAt == book.clock.now())
        await book.engine.markUsed(segment: 999)  // unknown: ignored, never thrown
    }

    @Test func aSegmentWithATriggerIsNeverUnused() async throws {
        let book = try await Self.book()
        let segment = try await book.engine.createSegment(name: "VIP customers", filters: ShapesBook.shapes[1].filters)
        _ = try await book.engine.createTrigger(segment: segment.id, onEnter: true, onExit: false, includeExisting: false)
        #expect(try book.engine.segment(id: segment.id).lastUsedAt == TestBook.start, "creating a trigger is a use")
        book.clock.advance(days: 200)
        try await Self.regainVIP(book)
        // An automation re-checks this rule on every write: telling its owner to retire it
        // (and then refusing the delete) would be wrong.
        let warnings = book.engine.lint(segment: try book.engine.segment(id: segment.id))
        #expect(!warnings.map(\.code).contains("unused"), "\(warnings)")
    }

    @Test func suppressionBySegmentFiresOnStatusExclusions() async throws {
        let book = try await Self.book()
        for value in ["unsubscribed", "hard_bounce"] {
            let warnings = book.engine.lint(filters: [filter("label", "contains", "vip"), filter("status", "not_equals", .string(value))], name: "VIPs")
            #expect(warnings.map(\.code) == ["suppression_by_segment"], "\(value)")
            #expect(warnings.first?.path == "filters[1]")
            #expect(warnings.first?.message.contains(value) == true && warnings.first?.message.contains("suppression list") == true)
        }
        let grouped = book.engine.lint(
            filters: [filter("label", "contains", "vip"), ["any": [filter("status", "not_equals", "unsubscribed"), field("city", "equals", "jakarta")]]],
            name: "VIPs")
        #expect(grouped.map(\.path) == ["filters[1].any[0]"])
        #expect(book.engine.lint(filters: [filter("label", "contains", "vip"), filter("status", "not_equals", "pending")], name: "VIPs").isEmpty)
        #expect(book.engine.lint(filters: [filter("label", "contains", "vip"), filter("status", "equals", "active")], name: "VIPs").isEmpty)
    }

    @Test(arguments: [
        "Segment 7", "segment", "test", "TEST", "Test 2", "testing", "new segment", "New Segment 3", "Untitled", "untitled segment",
        "Copy of VIP customers", "copy of x", "my segment", "draft", "temp", "tmp-1", "Segment #12", "42", "list", "New list", "Test segment",
    ])
    func genericNamesAreFlagged(_ name: String) async throws {
        let book = try await Self.book()
        let warnings = book.engine.lint(filters: ShapesBook.shapes[1].filters, name: name)
        #expect(warnings.map(\.code) == ["generic_name"])
        #expect(warnings.first?.path == "name")
        #expect(warnings.first?.message.contains("Inactive Buyers > 30 Days") == true)
    }

    @Test(arguments: [
        "VIP customers", "Inactive Buyers > 30 Days", "Test drivers in Bandung", "Segment of one: Ana", "Copywriters", "Listeners",
        "Draft beer fans", "Q1 2026 promo", "Jakarta 2026",
    ])
    func descriptiveNamesAreNotFlagged(_ name: String) async throws {
        let book = try await Self.book()
        #expect(book.engine.lint(filters: ShapesBook.shapes[1].filters, name: name).isEmpty, "\(name)")
    }

    @Test func everyCodeAtOnceInDocumentOrder() async throws {
        let book = try await Self.book()
        let stored = try await book.engine.createSegment(name: "Untitled", filters: [])
        book.clock.advance(days: 100)
        let all = book.engine.lint(segment: try book.engine.segment(id: stored.id))
        #expect(all.map(\.code) == ["overly_broad", "generic_name", "unused"])
        let rule: JSONValue = [filter("status", "not_equals", "unsubscribed"), filter("label", "contains", "ghost")]
        #expect(Self.codes(book.engine.lint(filters: rule, name: "test")) == ["suppression_by_segment", "stale_label", "generic_name"])
        // Lint never refuses: a rule that does not compile gets no warnings and no crash.
        #expect(book.engine.lint(filters: [["dimension": "planet", "op": "equals", "value": "mars"]], name: "Martians").isEmpty)
        #expect(book.engine.lint(filters: "not a list", name: "Broken").map(\.code) == ["overly_broad"])
    }

    // MARK: review_needed

    @Test func reviewNeededIsClearedOnlyByAnExplicitUpdate() async throws {
        let book = try await Self.book()
        let grouped: JSONValue = [["any": [filter("label", "contains", "vip"), field("lifetime_value", "greater_than", 2000)]]]
        let plain: JSONValue = [filter("label", "contains", "vip")]
        let segment = try await book.engine.createSegment(name: "VIP or big spenders", filters: grouped)
        #expect(segment.reviewNeeded)
        #expect(try await book.engine.createSegment(name: "Plain VIPs", filters: plain).reviewNeeded == false)

        // Name, description and re-saving the same kind of rule leave it set.
        #expect(try await book.engine.updateSegment(id: segment.id, name: "VIPs or big spenders").reviewNeeded)
        #expect(try await book.engine.updateSegment(id: segment.id, description: "for the spring campaign").reviewNeeded)
        #expect(try await book.engine.updateSegment(id: segment.id, filters: grouped).reviewNeeded)
        try book.restart()
        #expect(try book.engine.segment(id: segment.id).reviewNeeded)

        // Only review_needed: false clears it, and it stays cleared through other edits.
        let signed = try await book.engine.updateSegment(id: segment.id, reviewNeeded: false)
        #expect(signed.reviewNeeded == false)
        #expect(try await book.engine.updateSegment(id: segment.id, name: "Signed off VIPs").reviewNeeded == false)
        try book.restart()
        #expect(try book.engine.segment(id: segment.id).reviewNeeded == false)

        // A new rule is reviewed afresh.
        #expect(try await book.engine.updateSegment(id: segment.id, filters: grouped).reviewNeeded)
        #expect(try await book.engine.updateSegment(id: segment.id, filters: plain).reviewNeeded == false)
        // A rule and a sign-off in one update: the sign-off wins.
        #expect(try await book.engine.updateSegment(id: segment.id, filters: grouped, reviewNeeded: false).reviewNeeded == false)
        #expect(try await book.engine.updateSegment(id: segment.id, reviewNeeded: true).reviewNeeded)
        #expect(book.engine.validate(filters: grouped).reviewNeeded)
        #expect(book.engine.validate(filters: plain).reviewNeeded == false)
    }

    // MARK: Explain

    @Test func explainSaysWhatEachFilterLookedAt() async throws {
        let book = try await Self.book()
        let rule = try book.engine.compile(filters: ShapesBook.shapes[4].filters)
        let sari = try book.engine.explain(rule: rule, email: "SARI@example.com")
        #expect(sari["email"] == "sari@example.com")
        #expect(sari["matches"] == true && sari["sendable"] == true && sari["in_send_audience"] == true)
        #expect(sari["not_sendable_because"] == [])
        let filters = try #require(sari["filters"]?.arrayValue)
        #expect(filters.count == 3)
        #expect(filters.map { $0["path"] } == ["filters[0]", "filters[1]", "filters[2]"])
        #expect(filters.map { $0["dimension"] } == ["field", "funnel", "engagement"])
        #expect(filters[0]["detail"] == "lifetime_value is 2500")
        #expect(filters[2]["detail"]?.stringValue?.contains("not within the last 60 days") == true)

        // Tono matches but is unsubscribed; wati is suppressed; bayu matches nothing (no open).
        let tono = try book.engine.explain(rule: rule, email: "tono@example.com")
        #expect(tono["matches"] == true && tono["in_send_audience"] == false && tono["sendable"] == false)
        #expect(tono["not_sendable_because"] == ["status is unsubscribed, not active"])
        let wati = try book.engine.explain(rule: try book.engine.compile(filters: ShapesBook.shapes[0].filters), email: "wati@example.com")
        #expect(wati["matches"] == true && wati["in_send_audience"] == false)
        #expect(wati["not_sendable_because"] == ["the address is on the suppression list"])
        let umar = try book.engine.explain(rule: rule, email: "umar@example.com")
        #expect(umar["matches"] == false)
        #expect(umar["filters"]?.arrayValue?.map { $0["matches"] } == [false, false, true], "lifetime 1000 is not > 1000; promoter is not a customer")

        // A group lists its members' answers.
        let grouped = try book.engine.compile(filters: [["any": [filter("label", "contains", "vip"), field("city", "equals", "bandung")]]])
        let g = try book.engine.explain(rule: grouped, email: "umar@example.com")
        #expect(g["filters"]?[0]?["any"]?.arrayValue?.map { $0["matches"] } == [true, true])
        #expect(g["filters"]?[0]?["matches"] == true && g["filters"]?[0]?["path"] == "filters[0]")

        #expect(throws: SegmentError.self) { _ = try book.engine.explain(rule: rule, email: "nobody@example.com") }
        _ = try await book.engine.delete(emails: ["sari@example.com"])
        #expect(throws: SegmentError.self) { _ = try book.engine.explain(rule: rule, email: "sari@example.com") }
        // No filter: everyone matches, with an empty list of reasons.
        let all = try book.engine.explain(rule: try book.engine.compile(filters: []), email: "rina@example.com")
        #expect(all["matches"] == true && all["filters"] == [])
    }

    /// Checks one explain answer's internal consistency: a group's `matches` is the OR of its
    /// members, the top level's is the AND of its entries.
    static func consistent(_ entry: JSONValue) -> Bool {
        guard let children = entry["any"]?.arrayValue else { return entry["matches"]?.boolValue != nil }
        return children.allSatisfy(consistent) && entry["matches"]?.boolValue == children.contains { $0["matches"] == true }
    }

    @Test func explainAgreesWithCountAndResolveOnARandomBook() async throws {
        let started = Date()
        let book = try TestBook()
        let now = TestBook.start
        var builder = OracleBookBuilder(seed: 0xE4_91A1, now: now)
        let model = try await builder.build(into: book, contacts: 2_500)
        let engine = book.engine
        defer { withExtendedLifetime(book) {} }
        let snapshot = engine.snapshot
        var generator = OracleFilterGenerator(seed: 0xBADC0DE, now: now, book: model)
        var failures = 0
        var checked = 0
        var matchedSeen = 0, sendSeen = 0
        for n in 0..<40 where failures < 5 {
            let rule = generator.rule()
            let label = "rule \(n): \(rule.json.serialized())"
            let compiled = try engine.compile(filters: rule.json, book: snapshot)
            let all = engine.members(rule: compiled, audience: .all, book: snapshot)
            let send = engine.members(rule: compiled, audience: .send, book: snapshot)
            #expect(engine.count(rule: compiled, audience: .send, book: snapshot).matched == all.count)
            var bad = 0
            for slot in snapshot.alive.slots {
                let email = snapshot.emails[slot]
                let e = try engine.explain(rule: compiled, email: email, book: snapshot)
                checked += 1
                let matches = e["matches"]?.boolValue
                let inSend = e["in_send_audience"]?.boolValue
                let sendable = e["sendable"]?.boolValue
                let c = model.contacts[try #require(model.indexByKey[email.lowercased()])]
                let entries = e["filters"]?.arrayValue ?? []
                var ok = matches == all.contains(slot) && inSend == send.contains(slot)
                ok = ok && matches == rule.test(c) && sendable == model.isSendable(c)
                ok = ok && entries.allSatisfy(Self.consistent) && matches == entries.allSatisfy { $0["matches"] == true }
                ok = ok && entries.count == (rule.json.arrayValue?.count ?? -1)
                ok = ok && (e["not_sendable_because"]?.arrayValue?.isEmpty == sendable)
                if !ok {
                    bad += 1
                    if bad <= 3 { Issue.record("\(label): \(email) explain \(e.serialized()); members all \(all.contains(slot)) send \(send.contains(slot)); model \(c)") }
                }
                if matches == true { matchedSeen += 1 }
                if inSend == true { sendSeen += 1 }
            }
            if bad > 0 { failures += 1 }
        }
        #expect(checked == 40 * snapshot.contactCount)
        #expect(matchedSeen > 1_000 && sendSeen > 500, "the random rules must match someone: \(matchedSeen) matched, \(sendSeen) sendable")
        print("explain oracle: \(checked) explanations checked in \(Int(Date().timeIntervalSince(started))) s")
    }
}
