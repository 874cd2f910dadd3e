import SegmentCore
import WireJSON

/// Engagement: the last open, click and send of each contact, from recorded events.
///
/// Events arrive through `engagement.record`; a timestamp older than the stored one never
/// moves it back. Filters take `"event": open|click|send` and `before`, `after`, `between`,
/// `within_last {days}`, `not_within_last {days}` (includes never), `never`, `ever`.
public struct EngagementDimension: DimensionProvider {
    public static let events = ["open", "click", "send"]
    public let name = "engagement"
    public var contactKeys: [String] { [] }
    public var isDashboardDimension: Bool { true }
    public static let maxDays: Int64 = 36_500

    public init() {}

    public var descriptor: DimensionDescriptor {
        DimensionDescriptor(
            name: name, summary: "Last open, click and send.",
            operators: [
                .init("before", value: "date", "the last event is earlier than the value (a date: than that day's start)"),
                .init("after", value: "date", "the last event is later than the value (a date: than that day's end)"),
                .init("between", value: "[date, date]", "inclusive: from low's start to high's end"),
                .init("within_last", value: "{days: N}", "the last event is at or after now minus N×24 h"),
                .init("not_within_last", value: "{days: N}", "no event since now minus N×24 h, including never"),
                .init("never", value: "none", "the contact has no such event"),
                .init("ever", value: "none", "the contact has such an event"),
            ],
            keys: ["event": "required: open, click or send"])
    }

    public var migrations: [StoreMigration] {
        [StoreMigration("engagement.v1", sql: """
            CREATE TABLE contact_engagement (contact_id INTEGER PRIMARY KEY, last_open REAL, last_click REAL, last_send REAL)
            """)]
    }

    /// The engagement part of the book: one column per event type, NaN for never.
    struct Index: Sendable {
        /// Chunked, so a write copies the chunks it touches rather than whole columns.
        var columns: [ChunkedArray<Double>] = [ChunkedArray(), ChunkedArray(), ChunkedArray()]

        func time(_ event: Int, _ slot: Int) -> Double? {
            let c = columns[event]
            return slot < c.count && !c[slot].isNaN ? c[slot] : nil
        }

        mutating func set(_ event: Int, _ slot: Int, _ t: Double) {
            columns[event].grow(to: slot + 1, fill: .nan)
            columns[event][slot] = t
        }
    }

    static func index(_ book: Book, _ name: String) -> Index { book.part(name, as: Index.self) ?? Index() }

    public func load(from sql: any SQLExecutor, into book: inout Book) throws {
        var index = Index()
        try sql.forEachRow("SELECT contact_id, last_open, last_click, last_send FROM contact_engagement", []) { row in
            guard let slot = row[0].int64.map(Int.init), book.alive.contains(slot) else { return }
            for e in 0..<3 { if let t = row[e + 1].double { index.set(e, slot, t) } }
        }
        book.setPart(name, index)
    }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? { nil }

    public func apply(_ change: (any ContactChange)?, slot: Int, isNew: Bool, context: inout WriteContext) throws {}

    public func remove(slot: Int, context: inout WriteContext) throws {
        try context.sql.execute("DELETE FROM contact_engagement WHERE contact_id = ?", [.integer(Int64(slot))])
        var index = context.book.takePart(name, as: Index.self) ?? Index()
        for e in 0..<3 where slot < index.columns[e].count { index.columns[e][slot] = .nan }
        context.book.setPart(name, index)
    }

    /// Moves one event time forward (never back); returns whether it moved.
    func record(event: Int, slot: Int, at t: Double, context: inout WriteContext) throws -> Bool {
        var index = context.book.takePart(name, as: Index.self) ?? Index()
        defer { context.book.setPart(name, index) }
        if let old = index.time(event, slot), old >= t { return false }
        let column = ["last_open", "last_click", "last_send"][event]
        try context.sql.execute(
            "INSERT INTO contact_engagement(contact_id, \(column)) VALUES (?, ?) ON CONFLICT(contact_id) DO UPDATE SET \(column) = excluded.\(column)",
            [.integer(Int64(slot)), .real(t)])
        index.set(event, slot, t)
        context.touched.insert(slot)
        return true
    }

    /// Forgets one event time of a contact; the time it had, or `nil` (nothing written).
    func clear(event: Int, slot: Int, context: inout WriteContext) throws -> Double? {
        var index = context.book.takePart(name, as: Index.self) ?? Index()
        defer { context.book.setPart(name, index) }
        guard let old = index.time(event, slot) else { return nil }
        let column = ["last_open", "last_click", "last_send"][event]
        try context.sql.execute("UPDATE contact_engagement SET \(column) = NULL WHERE contact_id = ?", [.integer(Int64(slot))])
        index.set(event, slot, .nan)
        context.touched.insert(slot)
        return old
    }

    public func render(slot: Int, book: Book) -> [String: JSONValue] {
        let index = Self.index(book, name)
        var out: [String: JSONValue] = [:]
        for (e, event) in Self.events.enumerated() {
            out["last_\(event)_at"] = index.time(e, slot).map { .string(ISOTime.format($0)) } ?? .null
        }
        return ["engagement": .object(out)]
    }

    public func column(_ column: String, book: Book) -> ColumnReader? {
        guard let e = Self.events.firstIndex(where: { "last_\($0)_at" == column }) else { return nil }
        let index = Self.index(book, name)
        return ColumnReader { slot in index.time(e, slot).map { .string(ISOTime.format($0)) } ?? .null }
    }
}

extension EngagementDimension.Index: ResidentSize {
    /// Three time columns, grown only as far as the highest slot with an event.
    var residentBytes: Int { ResidentBytes.array(columns) }
}
