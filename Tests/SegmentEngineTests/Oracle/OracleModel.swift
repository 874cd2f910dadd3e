import Foundation
import SegmentCore
import WireJSON

/// Helpers on the core's seeded generator: the same seed gives the same book and rules.
extension SplitMix64 {

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &self)] }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// Up to `count` distinct items.
    mutating func sample<T>(_ items: [T], _ count: Int) -> [T] {
        var pool = items
        var out: [T] = []
        for _ in 0..<min(count, pool.count) { out.append(pool.remove(at: int(0...(pool.count - 1)))) }
        return out
    }

    /// Random upper/lower casing, so every case-insensitive comparison is exercised.
    mutating func recase(_ s: String) -> String {
        switch int(0...3) {
        case 0: return s.uppercased()
        case 1: return s.lowercased()
        case 2: return s.prefix(1).uppercased() + s.dropFirst()
        default: return s
        }
    }
}

/// The test's own plain model of one contact: what the engine should know, kept without any
/// engine code.
struct ModelContact {
    static let statuses = ["active", "pending", "unsubscribed", "hard_bounce"]
    static let stages = ["aware", "engaged", "customer", "loyal_customer", "promoter"]
    static let events = ["open", "click", "send"]

    let email: String
    /// The identity: the email lower-cased.
    let key: String
    var name: String? { didSet { nameLower = name?.lowercased() } }
    var status = "active"
    var stage: String?
    var lost = false
    /// Lower-cased label keys.
    var labels: Set<String> = []
    var city: String? { didSet { cityLower = city?.lowercased() } }
    /// Lower-cased copies, kept so the brute-force pass does not lower-case 20 000 strings per rule.
    private(set) var nameLower: String?
    private(set) var cityLower: String?
    var ltv: Double?
    /// A number with few distinct values (the engine keeps per-value bitmaps for those).
    var score: Double?
    var signup: Double?
    var vip: Bool?
    /// Last open, click, send (seconds since 1970), nil for never.
    var last: [Double?] = [nil, nil, nil]
    var createdAt: Double
    var alive = true

    init(email: String, createdAt: Double) {
        self.email = email
        key = email.lowercased()
        self.createdAt = createdAt
    }
}

/// The whole model book: contacts plus the account's suppression list.
struct ModelBook {
    var contacts: [ModelContact] = []
    var indexByKey: [String: Int] = [:]
    /// Lower-cased suppressed addresses.
    var suppressed: Set<String> = []

    var alive: [ModelContact] { contacts.filter(\.alive) }

    func isSendable(_ c: ModelContact) -> Bool { c.status == "active" && !suppressed.contains(c.key) }
}

/// Time text for test data, through Foundation (independent of the engine's own parser).
struct TimeText {
    private let stamp: ISO8601DateFormatter
    private let day: ISO8601DateFormatter

    init() {
        stamp = ISO8601DateFormatter()
        stamp.formatOptions = [.withInternetDateTime]
        stamp.timeZone = TimeZone(identifier: "UTC")!
        day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        day.timeZone = TimeZone(identifier: "UTC")!
    }

    /// `2026-01-31T08:00:00Z` (whole seconds only).
    func stamp(_ t: Double) -> String { stamp.string(from: Date(timeIntervalSince1970: t)) }

    /// `2026-01-31` for the UTC day starting at `dayStart`.
    func day(_ dayStart: Double) -> String { day.string(from: Date(timeIntervalSince1970: dayStart)) }
}

/// A date or time as a filter holds it, with the meaning API.md gives it.
enum ModelTime {
    /// A whole UTC day, `[start, start + 86 400)`.
    case day(Double)
    /// An exact instant.
    case instant(Double)

    var start: Double {
        switch self {
        case .day(let s), .instant(let s): return s
        }
    }

    func json(_ text: TimeText) -> JSONValue {
        switch self {
        case .day(let s): return .string(text.day(s))
        case .instant(let t): return .string(text.stamp(t))
        }
    }

    /// before: earlier than the day's start / the instant.
    func isBefore(_ t: Double) -> Bool { t < start }

    /// after: later than the day's end / the instant.
    func isAfter(_ t: Double) -> Bool {
        switch self {
        case .day(let s): return t >= s + 86_400
        case .instant(let x): return t > x
        }
    }

    func covers(_ t: Double) -> Bool {
        switch self {
        case .day(let s): return t >= s && t < s + 86_400
        case .instant(let x): return t == x
        }
    }

    /// between [lo, hi]: from lo's start to hi's end, inclusive.
    static func between(_ t: Double, _ lo: ModelTime, _ hi: ModelTime) -> Bool {
        guard t >= lo.start else { return false }
        switch hi {
        case .day(let s): return t < s + 86_400
        case .instant(let x): return t <= x
        }
    }
}
