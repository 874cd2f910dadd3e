import SegmentCore
import WireJSON

/// One measured segment: the rule segmentd evaluates and the SQL an expert would write instead.
struct BenchSegment {
    let name: String
    let filters: JSONValue
    let sql: String
    let arguments: [Double]
}

extension BenchSegment {
    /// The stored segment the segment-reference count names (created before the counts).
    static let storedVIPCustomers = (
        name: "bench: VIP customers",
        filters: [["dimension": "label", "op": "contains", "value": "vip"],
                  ["dimension": "funnel", "op": "in", "value": ["customer", "loyal_customer", "promoter"]]] as JSONValue
    )

    static func all(now: Double) -> [BenchSegment] {
        let day = 86_400.0
        let iso = { (t: Double) in JSONValue.string(ISOTime.format(t)) }
        return [
            BenchSegment(
                name: "active newsletter readers",
                filters: [["dimension": "status", "op": "equals", "value": "active"], ["dimension": "label", "op": "contains", "value": "newsletter"]],
                sql: "SELECT COUNT(*) FROM contact_label l JOIN contact c ON c.id = l.contact_id WHERE l.label = 'newsletter' AND c.status = 'active'",
                arguments: []),
            BenchSegment(
                name: "VIP customers",
                filters: [["dimension": "label", "op": "contains", "value": "vip"],
                          ["dimension": "funnel", "op": "in", "value": ["customer", "loyal_customer", "promoter"]]],
                sql: "SELECT COUNT(*) FROM contact_label l JOIN contact c ON c.id = l.contact_id WHERE l.label = 'vip' AND c.funnel IN ('customer','loyal_customer','promoter')",
                arguments: []),
            BenchSegment(
                name: "inactive over 90 days",
                filters: [["dimension": "engagement", "event": "open", "op": "not_within_last", "value": ["days": 90]]],
                sql: "SELECT COUNT(*) FROM contact WHERE last_open IS NULL OR last_open < ?",
                arguments: [now - 90 * day]),
            BenchSegment(
                name: "Jakarta-based active",
                filters: [["dimension": "field", "field": "city", "op": "equals", "value": "jakarta"], ["dimension": "status", "op": "equals", "value": "active"]],
                sql: "SELECT COUNT(*) FROM contact WHERE city = 'jakarta' AND status = 'active'",
                arguments: []),
            BenchSegment(
                name: "high-value at-risk customers",
                filters: [["dimension": "field", "field": "lifetime_value", "op": "greater_than", "value": 1000],
                          ["dimension": "funnel", "op": "in", "value": ["customer", "loyal_customer"]],
                          ["dimension": "engagement", "event": "open", "op": "not_within_last", "value": ["days": 60]]],
                sql: "SELECT COUNT(*) FROM contact WHERE lifetime_value > 1000 AND funnel IN ('customer','loyal_customer') AND (last_open IS NULL OR last_open < ?)",
                arguments: [now - 60 * day]),
            BenchSegment(
                name: "any-group: VIP or LTV > 5000, active",
                filters: [["dimension": "status", "op": "equals", "value": "active"],
                          ["any": [["dimension": "label", "op": "contains", "value": "vip"], ["dimension": "field", "field": "lifetime_value", "op": "greater_than", "value": 5000]]]],
                sql: "SELECT COUNT(*) FROM contact c WHERE c.status = 'active' AND (c.lifetime_value > 5000 OR EXISTS (SELECT 1 FROM contact_label l WHERE l.label = 'vip' AND l.contact_id = c.id))",
                arguments: []),
            BenchSegment(
                name: "text contains: plan ~ pro",
                filters: [["dimension": "field", "field": "plan", "op": "contains", "value": "pro"]],
                sql: "SELECT COUNT(*) FROM contact WHERE plan LIKE '%pro%'",
                arguments: []),
            BenchSegment(
                name: "number between: orders 3..10",
                filters: [["dimension": "field", "field": "orders", "op": "between", "value": [3, 10]]],
                sql: "SELECT COUNT(*) FROM contact WHERE orders BETWEEN 3 AND 10",
                arguments: []),
            BenchSegment(
                name: "4 filters: active, promo|webinar, click 30d, signup 2y",
                filters: [["dimension": "status", "op": "equals", "value": "active"],
                          ["dimension": "label", "op": "contains_any", "value": ["promo", "webinar"]],
                          ["dimension": "engagement", "event": "click", "op": "within_last", "value": ["days": 30]],
                          ["dimension": "field", "field": "signup_date", "op": "greater_than", "value": iso(now - 730 * day)]],
                sql: """
                    SELECT COUNT(*) FROM contact c WHERE c.status = 'active' AND c.last_click >= ? AND c.signup_date > ?
                    AND EXISTS (SELECT 1 FROM contact_label l WHERE l.contact_id = c.id AND l.label IN ('promo','webinar'))
                    """,
                arguments: [now - 30 * day, now - 730 * day]),
            BenchSegment(
                name: "segment reference: in VIP customers, active",
                filters: [["dimension": "segment", "op": "in", "value": .string(storedVIPCustomers.name)],
                          ["dimension": "status", "op": "equals", "value": "active"]],
                sql: """
                    SELECT COUNT(*) FROM contact_label l JOIN contact c ON c.id = l.contact_id
                    WHERE l.label = 'vip' AND c.funnel IN ('customer','loyal_customer','promoter') AND c.status = 'active'
                    """,
                arguments: []),
        ]
    }

    /// The streamed segment (about a third of the book) and its baseline query.
    static func resolveSegment(now: Double) -> BenchSegment {
        BenchSegment(
            name: "active, opened within 150 days",
            filters: [["dimension": "status", "op": "equals", "value": "active"],
                      ["dimension": "engagement", "event": "open", "op": "within_last", "value": ["days": 150]]],
            sql: "SELECT email, name, status FROM contact WHERE status = 'active' AND last_open >= ? ORDER BY id",
            arguments: [now - 150 * 86_400])
    }
}
