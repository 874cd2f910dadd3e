import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// `{"dimension": "segment", "op": "in"|"not_in", "value": ID_OR_NAME}`: counts, cycles,
/// renames and deletes of the referenced segment, triggers through a reference, explain.
@Suite(.ownThreads) struct SegmentReferenceTests {
    static func reference(_ value: JSONValue, _ op: String = "in") -> JSONValue { filter("segment", op, value) }

    /// 60 contacts: every 2nd is vip, every 3rd a customer, every 5th opened yesterday.
    static func book(_ backend: Backend = .sqlite) async throws -> TestBook {
        let book = try TestBook(backend: backend)
        try await book.seed((0..<60).map { i in
            var c: [String: JSONValue] = ["email": .string("r\(i)@example.com")]
            if i % 2 == 0 { c["labels"] = ["vip"] }
            if i % 3 == 0 { c["funnel"] = "customer" }
            return .object(c)
        })
        return book
    }

    static func emails(_ predicate: (Int) -> Bool) -> Set<String> { Set((0..<60).filter(predicate).map { "r\($0)@example.com" }) }

    @Test func aReferenceMatchesWhatTheSegmentMatchesByIdOrName() async throws {
        let book = try await Self.book()
        let vips = try await book.engine.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip")])
        #expect(try book.emails([Self.reference(.int(vips.id))]) == Self.emails { $0 % 2 == 0 })
        #expect(try book.emails([Self.reference("vips")]) == Self.emails { $0 % 2 == 0 }, "names are case-insensitive")
        #expect(try book.emails([Self.reference("VIPs", "not_in")]) == Self.emails { $0 % 2 != 0 })
        let vipCustomers: JSONValue = [Self.reference("VIPs"), filter("funnel", "equals", "customer")]
        #expect(try book.emails(vipCustomers) == Self.emails { $0 % 6 == 0 })
        #expect(try book.emailsByMatching(vipCustomers) == Self.emails { $0 % 6 == 0 }, "per-contact matching agrees")
        // A segment of a segment of a segment.
        let customers = try await book.engine.createSegment(name: "VIP customers", filters: vipCustomers)
        #expect(try book.emails([Self.reference(.int(customers.id), "not_in"), Self.reference("VIPs")]) == Self.emails { $0 % 2 == 0 && $0 % 3 != 0 })
        #expect(customers.reviewNeeded, "a segment filter is beyond the dashboard's five")

        let unknown = #expect(throws: SegmentError.self) { try book.engine.compile(filters: [Self.reference("Nobody")]) }
        #expect(unknown?.path == "filters[0].value" && unknown?.message == "no segment named \"Nobody\"")
        let wrongType = #expect(throws: SegmentError.self) { try book.engine.compile(filters: [Self.reference(true)]) }
        #expect(wrongType?.message.contains("expected a segment id (integer) or name (string)") == true)
    }

    @Test func aCycleIsRefusedNamingIt() async throws {
        let book = try await Self.book()
        let engine = book.engine
        let a = try await engine.createSegment(name: "A", filters: [filter("label", "contains", "vip")])
        let b = try await engine.createSegment(name: "B", filters: [Self.reference("A")])
        _ = try await engine.createSegment(name: "C", filters: [["any": [Self.reference(.int(b.id)), filter("funnel", "equals", "aware")]]])
        let cycle = await #expect(throws: SegmentError.self) { try await engine.updateSegment(id: a.id, filters: [Self.reference("C")]) }
        #expect(cycle?.path == "filters[0].value")
        #expect(cycle?.message.hasPrefix("segment reference cycle: \"A\" → \"C\" → \"B\" → \"A\"") == true, "\(cycle?.message ?? "")")
        let itself = await #expect(throws: SegmentError.self) { try await engine.updateSegment(id: a.id, filters: [Self.reference(.int(a.id))]) }
        #expect(itself?.message.hasPrefix("segment reference cycle: \"A\" → \"A\"") == true)
        let validated = engine.validate(filters: [filter("funnel", "equals", "customer"), Self.reference("C")], segment: a.id)
        #expect(validated.errors.map(\.path) == ["filters[1].value"] && validated.errors.first?.message.hasPrefix("segment reference cycle") == true)
        #expect(engine.validate(filters: [Self.reference("C")]).valid, "without the segment it is meant for, no cycle to see")
        let preview = await #expect(throws: SegmentError.self) { try await engine.previewSegmentUpdate(id: a.id, filters: [Self.reference("B")]) }
        #expect(preview?.message.hasPrefix("segment reference cycle") == true, "a dry run refuses it the same way")
        #expect(try engine.segment(id: a.id).filters == [filter("label", "contains", "vip")], "nothing saved")
    }

    @Test func renamingRewritesReferencesByNameAndDeletingIsRefusedNamingReferrers() async throws {
        let book = try await Self.book()
        let engine = book.engine
        let vips = try await engine.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip")])
        let byName = try await engine.createSegment(name: "By name", filters: [Self.reference("vips"), filter("funnel", "equals", "customer")])
        let byID = try await engine.createSegment(name: "By id", filters: [Self.reference(.int(vips.id))])
        let before = try engine.count(segment: byName.id, audience: .all)

        let renamed = try await engine.updateSegmentAndTriggers(id: vips.id, name: "Best customers")
        #expect(renamed.rewritten.map(\.id) == [byName.id], "only the reference by name needed rewriting")
        #expect(try engine.segment(id: byName.id).filters == [Self.reference("Best customers"), filter("funnel", "equals", "customer")])
        #expect(try engine.segment(id: byID.id).filters == [Self.reference(.int(vips.id))])
        #expect(try engine.count(segment: byName.id, audience: .all).matched == before.matched)

        let refused = await #expect(throws: SegmentError.self) { try await engine.deleteSegment(id: vips.id, force: true) }
        #expect(refused?.message == "segment \(vips.id) \"Best customers\" is used by segments \(byName.id) \"By name\", \(byID.id) \"By id\" (a segment filter); change their rules first")
        _ = try await engine.deleteSegment(id: byName.id)
        _ = try await engine.updateSegment(id: byID.id, filters: [filter("label", "contains", "vip")])
        #expect(try await engine.deleteSegment(id: vips.id).id == vips.id)
    }

    /// On both stores: through PostgreSQL the segments, triggers and baselines go through a
    /// fleet node's writes and reload.
    @Test(arguments: Backend.allCases) func triggersOnAReferrerFireWhenTheInnerMembershipChanges(_ backend: Backend) async throws {
        let book = try await Self.book(backend)
        let engine = book.engine
        let vips = try await engine.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip")])
        let outer = try await engine.createSegment(name: "VIP customers", filters: [Self.reference("VIPs"), filter("funnel", "equals", "customer")])
        let trigger = try await engine.createTrigger(segment: outer.id, onEnter: true, onExit: true, includeExisting: false)
        #expect(trigger.members.count == 10)

        var cursor = try await engine.lastCursor()
        // r1 is a customer-to-be without the label; r3 a customer without it.
        _ = try await engine.upsert(contacts: [["email": "r3@example.com", "labels": ["vip"]], ["email": "r0@example.com", "remove_labels": ["vip"]]])
        var (events, _) = try await engine.readEvents(after: cursor, limit: 100)
        #expect(Set(events.map { "\($0.type) \($0.email)" }) == ["enter r3@example.com", "exit r0@example.com"])
        #expect(events.allSatisfy { $0.trigger == trigger.id })

        // Editing the inner rule is a new question for both: their triggers re-baseline, silently.
        cursor = try await engine.lastCursor()
        let edited = try await engine.updateSegmentAndTriggers(id: vips.id, filters: [filter("label", "contains", "nobody")])
        #expect(edited.rebaselined == [trigger.id])
        (events, _) = try await engine.readEvents(after: cursor, limit: 100)
        #expect(events.isEmpty)
        #expect(engine.triggers().first { $0.id == trigger.id }?.members.isEmpty == true)
        _ = try await engine.upsert(contacts: [["email": "r9@example.com", "labels": ["nobody"]]])
        (events, _) = try await engine.readEvents(after: cursor, limit: 100)
        #expect(events.map { "\($0.type) \($0.email)" } == ["enter r9@example.com"], "the new inner rule is the one evaluated")

        // Reloaded from the store, the trigger holds the reference and its baseline.
        try book.restart()
        cursor = try await book.engine.lastCursor()
        _ = try await book.engine.upsert(contacts: [["email": "r9@example.com", "remove_labels": ["nobody"]]])
        (events, _) = try await book.engine.readEvents(after: cursor, limit: 100)
        #expect(events.map { "\($0.type) \($0.email)" } == ["exit r9@example.com"])
    }

    @Test func explainShowsTheInnerSegmentsReasons() async throws {
        let book = try await Self.book()
        let vips = try await book.engine.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip"), filter("funnel", "equals", "customer")])
        let rule = try book.engine.compile(filters: [Self.reference("VIPs", "not_in")])
        let why = try book.engine.explain(rule: rule, email: "r2@example.com")
        #expect(why["matches"] == true)
        let inner = try #require(why["filters"]?[0]?["segment"])
        #expect(inner["id"] == .int(vips.id) && inner["name"] == "VIPs" && inner["matches"] == false)
        #expect(inner["filters"]?[0]?["matches"] == true && inner["filters"]?[1]?["matches"] == false)
        #expect(inner["filters"]?[1]?["detail"]?.stringValue?.isEmpty == false)
        #expect(why["filters"]?[0]?["detail"]?.stringValue?.contains("not in segment \(vips.id) \"VIPs\"") == true)
    }

    /// References nest at most 8 deep, counted the same at create and update; an edit that
    /// would push a segment containing this one past it (or past 1,000 filters, the referenced
    /// ones counted) is refused naming that segment, and nested references share one budget.
    @Test func depthAndSizeAreBoundedForTheWholeExpansion() async throws {
        let book = try await Self.book()
        let engine = book.engine
        var chain = [try await engine.createSegment(name: "S0", filters: [filter("label", "contains", "vip")])]
        for i in 1...8 { chain.append(try await engine.createSegment(name: "S\(i)", filters: [Self.reference(.int(chain[i - 1].id))])) }
        _ = try await engine.updateSegment(id: chain[8].id, filters: chain[8].filters)  // re-saving the deepest is fine
        let ninth = await #expect(throws: SegmentError.self) { try await engine.createSegment(name: "S9", filters: [Self.reference(.int(chain[8].id))]) }
        #expect(ninth?.message.contains("segment references nest at most 8 deep") == true, "\(ninth?.message ?? "")")
        let other = try await engine.createSegment(name: "Other", filters: [filter("funnel", "equals", "customer")])
        let deeper = await #expect(throws: SegmentError.self) { try await engine.updateSegment(id: chain[0].id, filters: [Self.reference("Other")]) }
        #expect(deeper?.message.hasPrefix("segment \(chain[8].id) \"S8\" contains this one and would no longer compile") == true, "\(deeper?.message ?? "")")
        #expect(try engine.segment(id: chain[0].id).filters == [filter("label", "contains", "vip")], "nothing saved")
        _ = other

        // 400 references to a 2-filter segment expand to 1,200 filters: refused, not multiplied.
        let pair = try await engine.createSegment(name: "Pair", filters: [filter("label", "contains", "vip"), filter("funnel", "equals", "customer")])
        let wide: JSONValue = .array(Array(repeating: Self.reference(.int(pair.id)), count: 400))
        let tooWide = await #expect(throws: SegmentError.self) { try await engine.createSegment(name: "Wide", filters: wide) }
        #expect(tooWide?.message.contains("a rule may hold at most 1000 filters (those of the segments it refers to included)") == true, "\(tooWide?.message ?? "")")
        _ = try await engine.createSegment(name: "Narrow", filters: .array(Array(repeating: Self.reference(.int(pair.id)), count: 300)))
    }

    /// A fleet: node B edits the inner segment; node A, having applied the change, evaluates
    /// the outer segment's trigger with the new inner rule on its next write.
    @Test func anotherNodesEditOfTheInnerRuleReachesThisNodesTriggers() async throws {
        let book = try await Self.book(.postgres)
        let a = book.engine
        let b = try book.node()
        defer { try? b.close() }
        let vips = try await a.createSegment(name: "VIPs", filters: [filter("label", "contains", "vip")])
        let outer = try await a.createSegment(name: "Outer", filters: [Self.reference("VIPs")])
        let trigger = try await a.createTrigger(segment: outer.id, onEnter: true, onExit: true, includeExisting: false)
        try await b.waitFor(version: a.snapshot.version)
        _ = try await b.updateSegment(id: vips.id, filters: [filter("label", "contains", "gold")])
        try await a.waitFor(version: b.snapshot.version)
        #expect(a.triggers().first { $0.id == trigger.id }?.members.isEmpty == true, "re-baselined by B's edit")
        let cursor = try await a.lastCursor()
        _ = try await a.upsert(contacts: [["email": "r1@example.com", "labels": ["gold"]], ["email": "r2@example.com", "remove_labels": ["vip"]]])
        let (events, _) = try await a.readEvents(after: cursor, limit: 100)
        #expect(events.map { "\($0.type) \($0.email)" } == ["enter r1@example.com"], "the old inner rule would have fired exit r2 instead")
    }
}
