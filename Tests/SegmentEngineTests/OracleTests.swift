import Foundation
import SegmentCore
import SegmentEngine
import TestThreads
import Testing
import WireJSON

/// The engine against a brute-force oracle: a seeded random book of 20 000 contacts and a few
/// hundred random rules. For each rule, `count` (matched, sendable, excluded), the member sets
/// of both audiences, and the single-contact `matches` path equal the test's own evaluation
/// over its plain model.
@Suite(.ownThreads) struct OracleTests {
    static let contacts = 20_000
    static let rules = 300

    @Test(arguments: Backend.allCases) func countsAndMembersEqualABruteForceEvaluation(_ backend: Backend) async throws {
        let started = Date()
        let book = try TestBook(backend: backend)
        let now = TestBook.start
        var builder = OracleBookBuilder(seed: 0x5E6_3E47, now: now)
        // Through PostgreSQL the same rules on fewer contacts: what is checked there is the
        // store (every write and the reload), not the in-memory evaluation again.
        let model = try await builder.build(into: book, contacts: backend == .postgres ? Self.contacts / 3 : Self.contacts)
        let alive = model.alive
        #expect(book.engine.countContacts().total == alive.count)
        let built = Date().timeIntervalSince(started)

        // Stored segments for segment filters to name; later ones may name earlier ones.
        var segments = OracleFilterGenerator(seed: 0x5E6, now: now, book: model)
        for i in 0..<4 {
            let rule = segments.rule()
            let stored = try await book.engine.createSegment(name: "Oracle segment \(i)", filters: rule.json)
            segments.stored.append((stored.id, stored.name, rule.test))
        }
        let covered = try Self.check(book, model: model, ruleSeed: 0xC0FFEE, rules: Self.rules, stored: segments.stored)

        let expectedOps: Set<String> = [
            "status.equals", "status.not_equals", "status.in",
            "funnel.equals", "funnel.not_equals", "funnel.in", "funnel.lost",
            "label.contains", "label.contains_any", "label.not_contains",
            "field.text.equals", "field.text.not_equals", "field.text.contains", "field.text.not_contains",
            "field.text.is_empty", "field.text.is_not_empty",
            "field.number.equals", "field.number.not_equals", "field.number.greater_than", "field.number.less_than",
            "field.number.between", "field.number.is_empty", "field.number.is_not_empty",
            "field.date.equals", "field.date.not_equals", "field.date.greater_than", "field.date.less_than",
            "field.date.between", "field.date.is_empty", "field.date.is_not_empty",
            "field.boolean.equals", "field.boolean.not_equals", "field.boolean.is_empty", "field.boolean.is_not_empty",
            "engagement.before", "engagement.after", "engagement.between", "engagement.within_last",
            "engagement.not_within_last", "engagement.never", "engagement.ever",
            "segment.in", "segment.not_in",
        ]
        #expect(expectedOps.subtracting(covered).isEmpty, "operators never generated: \(expectedOps.subtracting(covered).sorted())")
        // What the store kept gives the same answers: the book reloaded from it.
        try book.restart()
        _ = try Self.check(book, model: model, ruleSeed: 0xC0FFEE, rules: Self.rules / 3, name: "reloaded: ", stored: segments.stored)
        print("oracle: \(alive.count) contacts built in \(Int(built)) s; \(Self.rules) rules checked in \(Int(Date().timeIntervalSince(started) - built)) s")
    }

    /// Checks `rules` random rules (from `ruleSeed`) on `book` against `model`; returns the
    /// operators they used.
    static func check(
        _ book: TestBook, model: ModelBook, ruleSeed: UInt64, rules: Int, name: String = "",
        stored: [(id: Int64, name: String, test: (ModelContact) -> Bool)] = []
    ) throws -> Set<String> {
        let now = TestBook.start
        let alive = model.alive
        let snapshot = book.engine.snapshot
        // Slot → model contact, through the email (the identity), not through engine evaluation.
        var modelBySlot: [Int: ModelContact] = [:]
        for slot in snapshot.alive.slots {
            let c = try #require(model.indexByKey[snapshot.emails[slot].lowercased()].map { model.contacts[$0] })
            #expect(c.alive)
            modelBySlot[slot] = c
        }
        #expect(modelBySlot.count == alive.count)
        let sampleSlots = Array(snapshot.alive.slots.enumerated().filter { $0.offset % 97 == 0 }.map(\.element))

        var generator = OracleFilterGenerator(seed: ruleSeed, now: now, book: model)
        generator.stored = stored
        var covered: Set<String> = []
        var failures = 0
        var oracleTime = Duration.zero, engineTime = Duration.zero
        for n in 0..<rules where failures < 10 {
            let rule = generator.rule()
            covered.formUnion(rule.ops)
            let label = "\(name)rule \(n): \(rule.json.serialized())"

            let t0 = ContinuousClock.now
            let matched = alive.filter(rule.test)
            let sendable = matched.filter(model.isSendable)
            var excluded = ["unsubscribed": 0, "hard_bounce": 0, "pending": 0, "suppressed": 0]
            for c in matched where !model.isSendable(c) {
                excluded[c.status == "active" ? "suppressed" : c.status, default: 0] += 1
            }

            let t1 = ContinuousClock.now
            oracleTime += t1 - t0
            let compiled = try book.engine.compile(filters: rule.json, book: snapshot)
            let count = book.engine.count(rule: compiled, audience: .send, book: snapshot)
            let all = Set(book.engine.members(rule: compiled, audience: .all, book: snapshot).slots.map { snapshot.emails[$0].lowercased() })
            let send = Set(book.engine.members(rule: compiled, audience: .send, book: snapshot).slots.map { snapshot.emails[$0].lowercased() })
            let wantAll = Set(matched.map(\.key))
            let wantSend = Set(sendable.map(\.key))

            engineTime += ContinuousClock.now - t1
            var ok = true
            ok = ok && count.matched == matched.count && count.sendable == sendable.count && count.excluded == excluded
            ok = ok && all == wantAll && send == wantSend
            #expect(count.matched == matched.count, "\(label)")
            #expect(count.sendable == sendable.count, "\(label)")
            #expect(count.excluded == excluded, "\(label)")
            #expect(count.version == snapshot.version)
            if all != wantAll {
                let extra = all.subtracting(wantAll).sorted(), missing = wantAll.subtracting(all).sorted()
                let example = (extra + missing).first.map { key in
                    "engine has \(book.engine.contact(email: key)?.serialized() ?? "nothing"); model has \(model.indexByKey[key].map { model.contacts[$0] }.map { "\($0)" } ?? "nothing")"
                } ?? ""
                Issue.record("\(label): engine only \(extra.prefix(5)), oracle only \(missing.prefix(5)); \(example)")
            }
            if send != wantSend {
                Issue.record("\(label): send audience: engine only \(send.subtracting(wantSend).sorted().prefix(5)), oracle only \(wantSend.subtracting(send).sorted().prefix(5))")
            }
            for slot in sampleSlots {
                let want = rule.test(modelBySlot[slot]!)
                if compiled.matches(slot: slot, in: snapshot, at: now) != want {
                    Issue.record("\(label): matches(\(snapshot.emails[slot])) is \(!want), expected \(want)")
                    ok = false
                    break
                }
            }
            if !ok { failures += 1 }
        }

        print("oracle: \(name)\(rules) rules (oracle \(oracleTime), engine \(engineTime))")
        return covered
    }

    /// Two books of one server, with mostly the same emails but different contacts, labels,
    /// fields and rules: each answers exactly by its own oracle, and nothing of one shows in
    /// the other.
    @Test func twoBooksWithOverlappingEmailsEachMatchTheirOwnOracle() async throws {
        let directory = NSTemporaryDirectory() + "segment-books-oracle-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = ManualTime(TestBook.start)
        let template = Engine.Configuration(databasePath: "", clock: clock)
        let catalog = try BookCatalog(
            layout: .init(dataDirectory: directory), engine: template, registry: TestBook.registry(), logger: TestBook.quietLogger)
        let acme = TestBook(borrowing: try await catalog.create("acme"), clock: clock)
        let globex = TestBook(borrowing: try await catalog.create("globex"), clock: clock)
        var acmeBuilder = OracleBookBuilder(seed: 0xAC3E, now: TestBook.start)
        let acmeModel = try await acmeBuilder.build(into: acme, contacts: 6_000)
        var globexBuilder = OracleBookBuilder(seed: 0x610BE5, now: TestBook.start)
        let globexModel = try await globexBuilder.build(into: globex, contacts: 5_000)
        let shared = Set(acmeModel.alive.map(\.key)).intersection(globexModel.alive.map(\.key))
        #expect(shared.count > 2_000, "the books share most emails")
        #expect(acme.engine.countContacts().total == acmeModel.alive.count)
        #expect(globex.engine.countContacts().total == globexModel.alive.count)
        #expect(try catalog.defaultEngine().countContacts().total == 0)
        _ = try Self.check(acme, model: acmeModel, ruleSeed: 0xA, rules: 100, name: "acme ")
        _ = try Self.check(globex, model: globexModel, ruleSeed: 0xB, rules: 100, name: "globex ")
        try await catalog.close()
    }
}
