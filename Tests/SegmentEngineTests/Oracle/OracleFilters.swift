import Foundation
import SegmentCore
import WireJSON

/// A random filter (or group) and the test's own reading of it: a plain predicate over the model.
struct OracleFilter {
    var json: JSONValue
    var test: (ModelContact) -> Bool
    /// `dimension.op` of every leaf, for coverage.
    var ops: [String]
}

/// Generates random rules over the oracle book, each with an independent evaluation written from
/// API.md's rules (missing values match only negative operators; whole days; inclusive ranges).
struct OracleFilterGenerator {
    var rng: SplitMix64
    let now: Double
    let text = TimeText()
    /// Real values of the book, so equality and boundary cases are hit.
    let ltvs: [Double]
    let signups: [Double]
    let eventTimes: [Double]
    let emails: [String]
    let createdTimes: [Double]
    /// Stored segments a `segment` filter may name, with the test of each one's rule.
    var stored: [(id: Int64, name: String, test: (ModelContact) -> Bool)] = []

    init(seed: UInt64, now: Double, book: ModelBook) {
        rng = SplitMix64(seed: seed)
        self.now = now
        ltvs = book.contacts.compactMap(\.ltv)
        signups = book.contacts.compactMap(\.signup)
        eventTimes = book.contacts.flatMap { $0.last.compactMap { $0 } }
        emails = book.contacts.map(\.email)
        createdTimes = Array(Set(book.contacts.map(\.createdAt))).sorted()
    }

    /// A rule: 0 to 3 top-level filters, some of them `any` groups (nested at times).
    mutating func rule() -> OracleFilter {
        let n = rng.chance(0.03) ? 0 : rng.int(1...3)
        var items: [OracleFilter] = []
        for _ in 0..<n { items.append(rng.chance(0.2) ? group(depth: 1) : leaf()) }
        let tests = items.map(\.test)
        return OracleFilter(json: .array(items.map(\.json)), test: { c in tests.allSatisfy { $0(c) } }, ops: items.flatMap(\.ops))
    }

    mutating func group(depth: Int) -> OracleFilter {
        var children: [OracleFilter] = []
        for _ in 0..<rng.int(1...3) { children.append(depth < 3 && rng.chance(0.15) ? group(depth: depth + 1) : leaf()) }
        let tests = children.map(\.test)
        return OracleFilter(json: ["any": .array(children.map(\.json))], test: { c in tests.contains { $0(c) } }, ops: children.flatMap(\.ops))
    }

    mutating func leaf() -> OracleFilter {
        switch rng.int(0...(stored.isEmpty ? 12 : 13)) {
        case 13: return segmentReference()
        case 12: return scoreField()
        case 0: return status()
        case 1, 2: return funnel()
        case 3, 4: return label()
        case 5: return cityField()
        case 6: return ltvField()
        case 7: return signupField()
        case 8: return vipField()
        case 9: return systemField()
        default: return engagementFilter()
        }
    }

    // MARK: Dimensions

    /// In (or not in) a stored segment, named by id or by its name in another case.
    mutating func segmentReference() -> OracleFilter {
        let segment = stored[rng.int(0...(stored.count - 1))]
        let negated = rng.chance(0.3)
        let value: JSONValue = rng.chance(0.5) ? .int(segment.id) : .string(rng.recase(segment.name))
        let test = segment.test
        return OracleFilter(
            json: ["dimension": "segment", "op": .string(negated ? "not_in" : "in"), "value": value],
            test: { negated != test($0) }, ops: ["segment." + (negated ? "not_in" : "in")])
    }

    mutating func status() -> OracleFilter {
        let statuses = ModelContact.statuses
        switch rng.int(0...2) {
        case 0:
            let s = rng.pick(statuses)
            return make("status", "equals", .string(s)) { $0.status == s }
        case 1:
            let s = rng.pick(statuses)
            return make("status", "not_equals", .string(s)) { $0.status != s }
        default:
            let list = rng.sample(statuses, rng.int(1...3))
            return make("status", "in", .array(list.map { .string($0) })) { list.contains($0.status) }
        }
    }

    mutating func funnel() -> OracleFilter {
        let stages = ModelContact.stages
        let lost: Bool? = rng.chance(0.4) ? rng.chance(0.5) : nil
        let extra: [String: JSONValue] = lost.map { ["lost": .bool($0)] } ?? [:]
        let lostTest: (ModelContact) -> Bool = { c in lost.map { c.lost == $0 } ?? true }
        switch rng.int(0...3) {
        case 0:
            let s = rng.pick(stages)
            return make("funnel", "equals", .string(s), extra: extra) { $0.stage == s && lostTest($0) }
        case 1:
            let s = rng.pick(stages)
            return make("funnel", "not_equals", .string(s), extra: extra) { $0.stage != s && lostTest($0) }
        case 2:
            let list = rng.sample(stages, rng.int(1...3))
            return make("funnel", "in", .array(list.map { .string($0) }), extra: extra) { c in c.stage.map(list.contains) == true && lostTest(c) }
        default:
            let l = rng.chance(0.5)
            return OracleFilter(json: ["dimension": "funnel", "lost": .bool(l)], test: { $0.lost == l }, ops: ["funnel.lost"])
        }
    }

    mutating func labelName() -> String {
        if rng.chance(0.05) { return "ghost" }
        let u = Double.random(in: 0..<1, using: &rng)
        return OracleBookBuilder.labels[min(29, Int(30 * u * u))]
    }

    mutating func label() -> OracleFilter {
        let list = (0..<rng.int(1...3)).map { _ in labelName() }
        let asList = list.count > 1 || rng.chance(0.3)
        let value: JSONValue = asList ? .array(list.map { .string(rng.recase($0)) }) : .string(rng.recase(list[0]))
        switch rng.int(0...2) {
        case 0: return make("label", "contains", value) { c in list.allSatisfy(c.labels.contains) }
        case 1: return make("label", "contains_any", .array(list.map { .string(rng.recase($0)) })) { c in list.contains(where: c.labels.contains) }
        default: return make("label", "not_contains", value) { c in !list.contains(where: c.labels.contains) }
        }
    }

    /// Text operators over any text value (custom `city`, system `name` and `email`); `read`
    /// gives the contact's value lower-cased.
    mutating func textFilter(_ name: String, _ read: @escaping (ModelContact) -> String?, samples: [String]) -> OracleFilter {
        let ops = ["equals", "not_equals", "contains", "not_contains", "is_empty", "is_not_empty"]
        let op = rng.pick(ops)
        let sample = rng.chance(0.1) ? "Paris" : rng.pick(samples)
        var needle = sample
        if op.hasSuffix("contains") {
            let chars = Array(sample)
            let from = rng.int(0...(chars.count - 1))
            let len = rng.int(1...min(5, chars.count - from))
            needle = String(chars[from..<(from + len)])
        }
        let want = needle.lowercased()
        let value: JSONValue = .string(rng.recase(needle))
        switch op {
        case "equals": return field(name, op, value) { c in read(c).map { $0 == want } ?? false }
        case "not_equals": return field(name, op, value) { c in read(c).map { $0 != want } ?? true }
        case "contains": return field(name, op, value) { c in read(c).map { $0.contains(want) } ?? false }
        case "not_contains": return field(name, op, value) { c in read(c).map { !$0.contains(want) } ?? true }
        case "is_empty": return field(name, op, nil) { read($0) == nil }
        default: return field(name, op, nil) { read($0) != nil }
        }
    }

    mutating func cityField() -> OracleFilter { textFilter("city", { $0.cityLower }, samples: OracleBookBuilder.cities) }

    /// Few distinct values: answered from per-value bitmaps, not a column scan.
    mutating func scoreField() -> OracleFilter {
        let x = Double(rng.int(-3...10)) + (rng.chance(0.1) ? 0.5 : 0)
        return numberField("score", \.score, x) { rng in Double(rng.int(-3...10)) }
    }

    mutating func ltvField() -> OracleFilter {
        let x = rng.chance(0.7) ? rng.pick(ltvs) : Double(rng.int(-100...5100))
        let pool = ltvs
        return numberField("ltv", \.ltv, x) { rng in rng.chance(0.7) ? rng.pick(pool) : x }
    }

    /// One filter on number field `name` around `x`; `other` draws the second bound of
    /// `between` (only then, so each field's random sequence is what it always was).
    mutating func numberField(
        _ name: String, _ value: KeyPath<ModelContact, Double?>, _ x: Double, other: (inout SplitMix64) -> Double
    ) -> OracleFilter {
        switch rng.int(0...6) {
        case 0: return field(name, "equals", .double(x)) { $0[keyPath: value] == x }
        case 1: return field(name, "not_equals", .double(x)) { c in c[keyPath: value].map { $0 != x } ?? true }
        case 2: return field(name, "greater_than", .double(x)) { c in c[keyPath: value].map { $0 > x } ?? false }
        case 3: return field(name, "less_than", .double(x)) { c in c[keyPath: value].map { $0 < x } ?? false }
        case 4:
            let y = other(&rng)
            let (lo, hi) = (min(x, y), max(x, y))
            return field(name, "between", [.double(lo), .double(hi)]) { c in c[keyPath: value].map { $0 >= lo && $0 <= hi } ?? false }
        case 5: return field(name, "is_empty", nil) { $0[keyPath: value] == nil }
        default: return field(name, "is_not_empty", nil) { $0[keyPath: value] != nil }
        }
    }

    /// A date value: a whole day, or an exact instant (often one the book holds).
    mutating func time(from samples: [Double]) -> ModelTime {
        let t = rng.chance(0.8) && !samples.isEmpty ? rng.pick(samples) : OracleBookBuilder.firstDay + Double(rng.int(0...(530 * 86_400)))
        if rng.chance(0.5) { return .day((t / 86_400).rounded(.down) * 86_400) }
        return .instant(t.rounded(.down))
    }

    /// Ordering operators over a time value, shared by date fields and created_at.
    mutating func dateFilter(_ name: String, samples: [Double], _ read: @escaping (ModelContact) -> Double?) -> OracleFilter {
        let x = time(from: samples)
        switch rng.int(0...6) {
        case 0: return field(name, "equals", x.json(text)) { c in read(c).map(x.covers) ?? false }
        case 1: return field(name, "not_equals", x.json(text)) { c in read(c).map { !x.covers($0) } ?? true }
        case 2: return field(name, "greater_than", x.json(text)) { c in read(c).map(x.isAfter) ?? false }
        case 3: return field(name, "less_than", x.json(text)) { c in read(c).map(x.isBefore) ?? false }
        case 4:
            let y = time(from: samples)
            let (lo, hi) = x.start <= y.start ? (x, y) : (y, x)
            return field(name, "between", [lo.json(text), hi.json(text)]) { c in read(c).map { ModelTime.between($0, lo, hi) } ?? false }
        case 5: return field(name, "is_empty", nil) { read($0) == nil }
        default: return field(name, "is_not_empty", nil) { read($0) != nil }
        }
    }

    mutating func signupField() -> OracleFilter { dateFilter("signup", samples: signups) { $0.signup } }

    mutating func vipField() -> OracleFilter {
        let b = rng.chance(0.5)
        switch rng.int(0...3) {
        case 0: return field("vip", "equals", .bool(b)) { $0.vip == b }
        case 1: return field("vip", "not_equals", .bool(b)) { c in c.vip.map { $0 != b } ?? true }
        case 2: return field("vip", "is_empty", nil) { $0.vip == nil }
        default: return field("vip", "is_not_empty", nil) { $0.vip != nil }
        }
    }

    mutating func systemField() -> OracleFilter {
        switch rng.int(0...2) {
        case 0: return textFilter("name", { $0.nameLower }, samples: OracleBookBuilder.firstNames + OracleBookBuilder.lastNames)
        case 1: return textFilter("email", { $0.key }, samples: [rng.pick(emails), rng.pick(OracleBookBuilder.domains), "user1", "User."])
        default: return dateFilter("created_at", samples: createdTimes) { $0.createdAt }
        }
    }

    mutating func engagementFilter() -> OracleFilter {
        let e = rng.int(0...2)
        let event = ModelContact.events[e]
        func make(_ op: String, _ value: JSONValue?, _ test: @escaping (Double?) -> Bool) -> OracleFilter {
            var o: [String: JSONValue] = ["dimension": "engagement", "event": .string(event), "op": .string(op)]
            if let value { o["value"] = value }
            return OracleFilter(json: .object(o), test: { test($0.last[e]) }, ops: ["engagement.\(op)"])
        }
        let now = self.now
        switch rng.int(0...6) {
        case 0:
            let x = time(from: eventTimes)
            return make("before", x.json(text)) { t in t.map(x.isBefore) ?? false }
        case 1:
            let x = time(from: eventTimes)
            return make("after", x.json(text)) { t in t.map(x.isAfter) ?? false }
        case 2:
            let x = time(from: eventTimes), y = time(from: eventTimes)
            let (lo, hi) = x.start <= y.start ? (x, y) : (y, x)
            return make("between", [lo.json(text), hi.json(text)]) { t in t.map { ModelTime.between($0, lo, hi) } ?? false }
        case 3:
            let n = rng.chance(0.7) ? rng.pick([1, 7, 30, 90, 180, 365]) : rng.int(1...400)
            let since = now - Double(n) * 86_400
            return make("within_last", ["days": .int(Int64(n))]) { t in t.map { $0 >= since } ?? false }
        case 4:
            let n = rng.chance(0.7) ? rng.pick([1, 7, 30, 90, 180, 365]) : rng.int(1...400)
            let since = now - Double(n) * 86_400
            return make("not_within_last", ["days": .int(Int64(n))]) { t in t.map { $0 < since } ?? true }
        case 5: return make("never", nil) { $0 == nil }
        default: return make("ever", nil) { $0 != nil }
        }
    }

    // MARK: Building

    func make(
        _ dimension: String, _ op: String, _ value: JSONValue, extra: [String: JSONValue] = [:], _ test: @escaping (ModelContact) -> Bool
    ) -> OracleFilter {
        var o: [String: JSONValue] = ["dimension": .string(dimension), "op": .string(op), "value": value]
        o.merge(extra) { _, new in new }
        return OracleFilter(json: .object(o), test: test, ops: ["\(dimension).\(op)"])
    }

    func field(_ name: String, _ op: String, _ value: JSONValue?, _ test: @escaping (ModelContact) -> Bool) -> OracleFilter {
        var o: [String: JSONValue] = ["dimension": "field", "field": .string(name), "op": .string(op)]
        if let value { o["value"] = value }
        let kind = ["city": "text", "name": "text", "email": "text", "ltv": "number", "score": "number", "signup": "date", "created_at": "date", "vip": "boolean"][name]!
        return OracleFilter(json: .object(o), test: test, ops: ["field.\(kind).\(op)"])
    }
}
