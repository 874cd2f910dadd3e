import Foundation
import SegmentCore
import SegmentEngine
import Testing
import WireJSON

/// Builds a seeded random Contact Book twice: in the engine (through its public writes) and
/// in the test's plain model.
///
/// The book has every dimension's data with gaps: skewed labels, missing field values,
/// never-seen events, suppressed addresses (some of them not contacts yet), deleted contacts,
/// and an update pass that clears, replaces, adds and removes.
struct OracleBookBuilder {
    static let cities = ["Jakarta", "jakarta", "JAKARTA Selatan", "Bandung", "Surabaya", "Medan", "Zürich", "Denpasar", "Yogyakarta", "Bogor"]
    static let firstNames = ["Ana", "Budi", "Citra", "Dewi", "Eko", "Fajar", "Gita", "Hadi", "Intan", "Joko"]
    static let lastNames = ["Lima", "Santoso", "Wijaya", "Hartono", "Pratama"]
    static let labels = (0..<30).map { String(format: "tag%02d", $0) }
    static let domains = (0..<7).map { "domain\($0).example" }
    static let day = 86_400.0
    /// Test data's days run from 2025-01-01 to 2026-06-10.
    static let firstDay = instant("2025-01-01T00:00:00Z")
    static let dayCount = 526

    var rng: SplitMix64
    let now: Double
    let text = TimeText()
    var model = ModelBook()

    init(seed: UInt64, now: Double) {
        rng = SplitMix64(seed: seed)
        self.now = now
    }

    /// A label index skewed towards the first labels (tag00 is common, tag29 rare).
    mutating func skewedLabel() -> String {
        let u = Double.random(in: 0..<1, using: &rng)
        return Self.labels[min(29, Int(30 * u * u * u))]
    }

    mutating func randomDay() -> Double { Self.firstDay + Double(rng.int(0...(Self.dayCount - 1))) * Self.day }

    /// A field value and the document value that writes it.
    mutating func randomSignup() -> (Double, JSONValue) {
        let dayStart = randomDay()
        if rng.chance(0.5) { return (dayStart, .string(text.day(dayStart))) }
        let t = dayStart + Double(rng.int(0...86_399))
        return (t, .string(text.stamp(t)))
    }

    mutating func randomLTV() -> Double {
        switch rng.int(0...9) {
        case 0: return Double(rng.int(-50...0))
        case 1: return Double(rng.int(0...5000)) + 0.5
        case 2: return Double(rng.int(0...20)) * 100  // many ties on round numbers
        default: return Double(rng.int(0...5000))
        }
    }

    /// A new contact's document and its model.
    mutating func newContact(_ i: Int, createdAt: Double) -> (JSONValue, ModelContact) {
        var local = "user\(i)"
        if rng.chance(0.1) { local = "User.\(i)" }
        let email = "\(local)@\(Self.domains[i % 7])"
        var c = ModelContact(email: email, createdAt: createdAt)
        var doc: [String: JSONValue] = ["email": .string(rng.chance(0.05) ? " \(email) " : email)]
        if rng.chance(0.8) {
            let name = "\(rng.pick(Self.firstNames)) \(rng.pick(Self.lastNames))"
            c.name = name
            doc["name"] = .string(name)
        }
        let roll = Double.random(in: 0..<1, using: &rng)
        c.status = roll < 0.7 ? "active" : roll < 0.8 ? "pending" : roll < 0.92 ? "unsubscribed" : "hard_bounce"
        if c.status != "active" || rng.chance(0.7) { doc["status"] = .string(c.status) }
        if rng.chance(0.75) {
            c.stage = rng.pick(ModelContact.stages)
            doc["funnel"] = .string(c.stage!)
        }
        if rng.chance(0.1) {
            c.lost = true
            doc["lost"] = true
        } else if rng.chance(0.1) {
            doc["lost"] = false
        }
        if !rng.chance(0.2) {
            var written: [JSONValue] = []
            for _ in 0..<rng.int(1...5) {
                let label = skewedLabel()
                c.labels.insert(label)
                written.append(.string(rng.recase(label)))
            }
            doc[rng.chance(0.5) ? "labels" : "add_labels"] = .array(written)
        }
        var fields: [String: JSONValue] = [:]
        if rng.chance(0.75) {
            let city = rng.pick(Self.cities)
            c.city = city
            fields["city"] = .string(city)
        } else if rng.chance(0.2) {
            fields["city"] = ""  // empty text is no value
        }
        if rng.chance(0.7) {
            let ltv = randomLTV()
            c.ltv = ltv
            fields["ltv"] = ltv.rounded() == ltv ? .int(Int64(ltv)) : .double(ltv)
        }
        if rng.chance(0.8) {
            let score = Double(rng.int(-2...9))
            c.score = score
            fields["score"] = .int(Int64(score))
        }
        if rng.chance(0.7) {
            let (t, json) = randomSignup()
            c.signup = t
            fields["signup"] = json
        }
        if rng.chance(0.6) {
            let vip = rng.chance(0.3)
            c.vip = vip
            fields["vip"] = .bool(vip)
        } else if rng.chance(0.1) {
            fields["vip"] = .null
        }
        if !fields.isEmpty { doc["fields"] = .object(fields) }
        return (.object(doc), c)
    }

    /// An event time over the last year, sometimes exactly on a within_last boundary.
    mutating func eventTime() -> Double {
        if rng.chance(0.03) { return now - Double(rng.pick([1, 7, 30, 90, 180, 365])) * Self.day }
        return now - Double(rng.int(0...(366 * 86_400)))
    }

    /// Writes the whole book into `book` and returns the model.
    mutating func build(into book: TestBook, contacts: Int) async throws -> ModelBook {
        try await book.define("city", "text")
        try await book.define("ltv", "number")
        try await book.define("score", "number")
        try await book.define("signup", "date")
        try await book.define("vip", "boolean")

        // Some addresses are suppressed before they are contacts.
        var early: [String] = []
        for i in stride(from: 3, to: contacts, by: 997) { early.append("user\(i)@domain\(i % 7).example") }
        early += (0..<50).map { "outsider\($0)@elsewhere.example" }
        _ = try await book.engine.suppress(emails: early, reason: "imported")
        model.suppressed.formUnion(early.map { $0.lowercased() })

        // Contacts in batches of 5 000, a day apart, so created_at varies.
        let batches = (contacts + 4_999) / 5_000
        book.clock.set(now - Double(batches - 1) * Self.day)
        var i = 0
        while i < contacts {
            let end = min(contacts, i + 5_000)
            var docs: [JSONValue] = []
            docs.reserveCapacity(end - i)
            for n in i..<end {
                let (doc, c) = newContact(n, createdAt: book.clock.now())
                docs.append(doc)
                model.indexByKey[c.key] = model.contacts.count
                model.contacts.append(c)
            }
            let result = try await book.engine.upsert(contacts: docs, atomic: false)
            #expect(result.created == end - i && result.failed.isEmpty, "batch at \(i): \(result.failed.prefix(3).map { "\($0.error)" })")
            i = end
            if i < contacts { book.clock.advance(days: 1) }
        }
        #expect(book.clock.now() == now)

        try await recordEvents(into: book)
        try await updatePass(into: book)

        // Suppress ~3% more, unsuppress some, delete ~1.5%.
        let more = model.contacts.indices.filter { _ in rng.chance(0.03) }.map { rng.recase(model.contacts[$0].email) }
        _ = try await book.engine.suppress(emails: more, reason: "complaint")
        model.suppressed.formUnion(more.map { $0.lowercased() })
        let lifted = rng.sample(Array(model.suppressed).sorted(), 60)
        _ = try await book.engine.unsuppress(emails: lifted)
        model.suppressed.subtract(lifted)

        let doomed = rng.sample(Array(model.contacts.indices), contacts * 3 / 200)
        let deleted = try await book.engine.delete(emails: doomed.map { model.contacts[$0].email.uppercased() })
        #expect(deleted == doomed.count)
        for d in doomed { model.contacts[d].alive = false }
        return model
    }

    mutating func recordEvents(into book: TestBook) async throws {
        var events: [JSONValue] = []
        for idx in model.contacts.indices {
            for (e, p) in [(0, 0.7), (1, 0.4), (2, 0.85)] where rng.chance(p) {
                // One to three events each; the last time is the latest, whatever the order.
                for _ in 0..<rng.int(1...3) {
                    let t = eventTime()
                    let c = model.contacts[idx]
                    model.contacts[idx].last[e] = max(c.last[e] ?? -.infinity, t)
                    events.append(["email": .string(rng.recase(c.email)), "type": .string(ModelContact.events[e]), "at": .string(text.stamp(t))])
                }
            }
        }
        events.shuffle(using: &rng)
        let method = try book.method("engagement.record")
        var start = 0
        while start < events.count {
            let chunk = Array(events[start..<min(events.count, start + 10_000)])
            let result = try await book.engine.run(method, params: ["events": .array(chunk)])
            #expect(result["failed"] == [], "events at \(start)")
            start += chunk.count
        }
    }

    /// Changes ~10% of contacts: status, stage (and clearing it), lost, labels, fields (and clearing them).
    mutating func updatePass(into book: TestBook) async throws {
        var docs: [JSONValue] = []
        for idx in model.contacts.indices where rng.chance(0.1) {
            var c = model.contacts[idx]
            var doc: [String: JSONValue] = ["email": .string(rng.recase(c.email))]
            if rng.chance(0.3) {
                c.status = rng.pick(ModelContact.statuses)
                doc["status"] = .string(c.status)
            }
            if rng.chance(0.3) {
                if rng.chance(0.3) {
                    c.stage = nil
                    doc["funnel"] = .null
                } else {
                    c.stage = rng.pick(ModelContact.stages)
                    doc["funnel"] = .string(c.stage!)
                }
            }
            if rng.chance(0.2) {
                c.lost.toggle()
                doc["lost"] = .bool(c.lost)
            }
            if rng.chance(0.2) {
                let replace = (0..<rng.int(0...3)).map { _ in skewedLabel() }
                c.labels = Set(replace)
                doc["labels"] = .array(replace.map { .string(rng.recase($0)) })
            }
            if rng.chance(0.4) {
                let add = (0..<rng.int(1...2)).map { _ in skewedLabel() }
                let remove = (0..<rng.int(0...2)).map { _ in skewedLabel() }
                c.labels.formUnion(add)
                c.labels.subtract(remove)
                doc["add_labels"] = .array(add.map { .string(rng.recase($0)) })
                doc["remove_labels"] = .array(remove.map { .string(rng.recase($0)) })
            }
            var fields: [String: JSONValue] = [:]
            if rng.chance(0.3) {
                if rng.chance(0.3) { c.city = nil; fields["city"] = .null } else { c.city = rng.pick(Self.cities); fields["city"] = .string(c.city!) }
            }
            if rng.chance(0.3) {
                if rng.chance(0.3) { c.ltv = nil; fields["ltv"] = .null } else { c.ltv = randomLTV(); fields["ltv"] = .double(c.ltv!) }
            }
            if rng.chance(0.3) {
                if rng.chance(0.3) { c.score = nil; fields["score"] = .null } else { c.score = Double(rng.int(-2...9)); fields["score"] = .double(c.score!) }
            }
            if rng.chance(0.2) {
                if rng.chance(0.3) { c.signup = nil; fields["signup"] = "" } else { let (t, j) = randomSignup(); c.signup = t; fields["signup"] = j }
            }
            if rng.chance(0.2) {
                if rng.chance(0.3) { c.vip = nil; fields["vip"] = .null } else { c.vip = rng.chance(0.5); fields["vip"] = .bool(c.vip!) }
            }
            if !fields.isEmpty { doc["fields"] = .object(fields) }
            if rng.chance(0.1) {
                c.name = nil
                doc["name"] = .null
            }
            model.contacts[idx] = c
            docs.append(.object(doc))
        }
        let result = try await book.engine.upsert(contacts: docs, atomic: true)
        #expect(result.updated == docs.count && result.created == 0)
    }
}
