import SegmentCore
import WireJSON

/// One synthetic contact, as plain values (the baseline loads these into typed columns).
struct SyntheticContact {
    var email: String
    var name: String
    var status: String
    var funnel: String?
    var lost: Bool
    var labels: [String]
    var city: String
    var plan: String
    var lifetimeValue: Double?
    var orders: Double
    var signupDate: Double
    var vip: Bool
    var lastOpen: Double?
    var lastClick: Double?
    var lastSend: Double?

    /// The contact document sent to `contacts.upsert`.
    var document: JSONValue {
        var fields: [String: JSONValue] = [
            "city": .string(city), "plan": .string(plan), "orders": .double(orders),
            "signup_date": .string(ISOTime.format(signupDate)), "vip": .bool(vip),
        ]
        if let lifetimeValue { fields["lifetime_value"] = .double(lifetimeValue) }
        var doc: [String: JSONValue] = [
            "email": .string(email), "name": .string(name), "status": .string(status), "lost": .bool(lost),
            "labels": .array(labels.map { .string($0) }), "fields": .object(fields),
        ]
        if let funnel { doc["funnel"] = .string(funnel) }
        return .object(doc)
    }

    /// The contact's last open, click and send as `engagement.record` events.
    var events: [JSONValue] {
        [("open", lastOpen), ("click", lastClick), ("send", lastSend)].compactMap { type, at in
            at.map { ["email": .string(email), "type": .string(type), "at": .string(ISOTime.format($0))] }
        }
    }
}

/// A deterministic Contact Book: statuses, funnel stages, ~50 labels with Zipf-like skew,
/// typed custom fields, engagement over the last year with some contacts never opening.
struct SyntheticBook {
    static let fields: [(String, String)] = [
        ("city", "text"), ("plan", "text"), ("lifetime_value", "number"), ("orders", "number"),
        ("signup_date", "date"), ("vip", "boolean"),
    ]
    static let labels = ["newsletter", "vip", "promo", "blog", "webinar"] + (5..<50).map { "label-\($0)" }
    static let cities = ["Jakarta", "Bandung", "Surabaya", "Medan", "Singapore", "Kuala Lumpur", "Manila", "Bangkok", "Hanoi", "Sydney"]
    static let plans = ["free", "starter", "pro", "pro-plus", "enterprise"]
    static let stages = ["aware", "engaged", "customer", "loyal_customer", "promoter"]

    let count: Int
    let seed: UInt64
    let now: Double

    func contact(_ i: Int) -> SyntheticContact {
        var rng = SplitMix64(seed: seed &+ UInt64(i) &* 0x100_0000_01B3)
        func unit() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }
        let statusRoll = unit()
        let status = statusRoll < 0.85 ? "active" : statusRoll < 0.90 ? "pending" : statusRoll < 0.97 ? "unsubscribed" : "hard_bounce"
        let stageRoll = unit()
        let funnel: String? = stageRoll < 0.15 ? nil : Self.stages[min(4, Int((stageRoll - 0.15) / 0.17))]
        var labels: [String] = []
        for (rank, label) in Self.labels.enumerated() where unit() < 0.6 / Double(rank + 1) + 0.01 { labels.append(label) }
        let year = 365.0 * 86_400
        let neverOpened = unit() < 0.2
        let lastOpen = neverOpened ? nil : now - unit() * year
        let lastClick = lastOpen.flatMap { open in unit() < 0.5 ? open - unit() * 86_400 * 30 : nil }
        return SyntheticContact(
            email: "contact\(i)@example.com", name: "Contact \(i)", status: status, funnel: funnel, lost: unit() < 0.05,
            labels: labels, city: Self.cities[Int(unit() * unit() * Double(Self.cities.count))],
            plan: Self.plans[Int(unit() * Double(Self.plans.count))],
            lifetimeValue: unit() < 0.3 ? nil : (unit() * unit() * 10_000).rounded(),
            orders: (unit() * 20).rounded(.down), signupDate: now - unit() * 4 * year, vip: unit() < 0.1,
            lastOpen: lastOpen, lastClick: lastClick, lastSend: now - unit() * 30 * 86_400)
    }
}
