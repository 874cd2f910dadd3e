import SegmentCore
import SegmentEngine
import Testing
import WireJSON

/// A small hand-made book for the product's five segment shapes, built so that each shape has
/// members, near misses on every edge (a boundary day, a boundary value, a near-match city),
/// and matches that are not sendable (unsubscribed, pending, hard bounce, suppressed).
enum ShapesBook {
    static let day = TestBook.day
    static let now = TestBook.start

    static func build(_ book: TestBook) async throws {
        try await book.define("city", "text")
        try await book.define("lifetime_value", "number")
        try await book.seed([
            ["email": "rina@example.com", "status": "active", "labels": ["newsletter"], "fields": ["city": "Jakarta"]],
            ["email": "sari@example.com", "labels": ["Newsletter", "vip"], "funnel": "customer",
             "fields": ["city": "JAKARTA", "lifetime_value": 2500]],
            ["email": "tono@example.com", "status": "unsubscribed", "labels": ["newsletter", "VIP"], "funnel": "loyal_customer",
             "fields": ["city": "jakarta", "lifetime_value": 5000]],
            ["email": "umar@example.com", "labels": ["vip"], "funnel": "promoter", "fields": ["city": "Bandung", "lifetime_value": 1000]],
            ["email": "vina@example.com", "labels": ["vip"], "funnel": "engaged", "fields": ["lifetime_value": 9000]],
            ["email": "wati@example.com", "labels": ["newsletter"], "fields": ["city": "Jakarta Selatan"]],
            ["email": "yoga@example.com", "status": "pending", "labels": ["newsletter"], "fields": ["city": "jakarta"]],
            ["email": "zaki@example.com", "funnel": "customer", "lost": true, "fields": ["lifetime_value": 1500]],
            ["email": "ayu@example.com", "labels": ["VIP"], "funnel": "loyal_customer", "fields": ["lifetime_value": 1000.01]],
            ["email": "bayu@example.com", "status": "hard_bounce", "funnel": "customer", "fields": ["lifetime_value": 3000]],
        ])
        let text = TimeText()
        let ago = { (days: Double) in text.stamp(now - days * day) }
        try await book.record([
            ("rina@example.com", "open", ago(10)),
            ("sari@example.com", "open", ago(120)),
            ("umar@example.com", "open", ago(61)),
            ("vina@example.com", "open", ago(200)),
            ("wati@example.com", "open", ago(95)),
            ("zaki@example.com", "open", ago(60)),  // exactly on the 60-day boundary: within the last 60 days
            ("ayu@example.com", "open", ago(61)),
            ("bayu@example.com", "send", ago(5)),
            ("tono@example.com", "click", ago(3)),
        ])
        _ = try await book.engine.suppress(emails: ["WATI@example.com"], reason: "complaint")
    }

    struct Shape: Sendable, CustomStringConvertible {
        let name: String
        let filters: JSONValue
        let members: Set<String>
        let sendable: Set<String>
        var description: String { name }
    }

    static let shapes: [Shape] = [
        Shape(
            name: "Active newsletter readers",
            filters: [filter("status", "equals", "active"), filter("label", "contains", "newsletter")],
            members: ["rina@example.com", "sari@example.com", "wati@example.com"],
            sendable: ["rina@example.com", "sari@example.com"]),
        Shape(
            name: "VIP customers",
            filters: [filter("label", "contains", "vip"), filter("funnel", "in", ["customer", "loyal_customer", "promoter"])],
            members: ["sari@example.com", "tono@example.com", "umar@example.com", "ayu@example.com"],
            sendable: ["sari@example.com", "umar@example.com", "ayu@example.com"]),
        Shape(
            name: "Inactive over 90 days",
            filters: [engagement("open", "not_within_last", days(90))],
            members: ["sari@example.com", "tono@example.com", "vina@example.com", "wati@example.com", "yoga@example.com", "bayu@example.com"],
            sendable: ["sari@example.com", "vina@example.com"]),
        Shape(
            name: "Jakarta-based active contacts",
            filters: [field("city", "equals", "jakarta"), filter("status", "equals", "active")],
            members: ["rina@example.com", "sari@example.com"],
            sendable: ["rina@example.com", "sari@example.com"]),
        Shape(
            name: "High-value at-risk customers",
            filters: [
                field("lifetime_value", "greater_than", 1000), filter("funnel", "in", ["customer", "loyal_customer"]),
                engagement("open", "not_within_last", days(60)),
            ],
            members: ["sari@example.com", "tono@example.com", "ayu@example.com", "bayu@example.com"],
            sendable: ["sari@example.com", "ayu@example.com"]),
    ]
}
