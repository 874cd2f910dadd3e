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

    /// Before documents: one row per contact in `contact_engagement`.
    public var legacy: LegacyStorage? {
        LegacyStorage(
            migrations: [StoreMigration("engagement.v1", sql: """
                CREATE TABLE contact_engagement (contact_id INTEGER PRIMARY KEY, last_open REAL, last_click REAL, last_send REAL)
                """)],
            dropTables: ["contact_engagement"]
        ) { sql, book in
            var index = Index()
            try sql.forEachRow("SELECT contact_id, last_open, last_click, last_send FROM contact_engagement", []) { row in
                guard let slot = row[0].int64.map(Int.init), book.alive.contains(slot) else { return }
                for e in 0..<3 { if let t = row[e + 1].double { index.set(e, slot, t) } }
            }
            book.setPart(index)
        }
    }

    /// The engagement part of the book: one column per event type, NaN for never.
    struct Index: BookPart {
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

    static func index(_ book: Book, _ name: String) -> Index { book.part(Index.self) ?? Index() }

    /// A contact's document is its three times (open, click, send), each a 0 byte for never or
    /// a 1 byte and the time's 8 bytes: exact, and no parsing on load.
    public func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
        stored.replacing?.forEach { slot in
            for e in 0..<3 where slot < index.columns[e].count { index.columns[e][slot] = .nan }
        }
        try stored.forEachDocument { slot, doc in
            guard book.alive.contains(slot) else { return }
            var reader = DocumentReader(doc)
            for e in 0..<3 { if let t = try reader.optionalDouble() { index.set(e, slot, t) } }
        }
        book.setPart(index)
    }

    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let index = Self.index(book, name)
        slots.forEach { slot in
            let times = (0..<3).map { index.time($0, slot) }
            guard times.contains(where: { $0 != nil }) else { return emit(slot, nil) }
            var doc = DocumentWriter(capacity: 27)
            for t in times { doc.optionalDouble(t) }
            emit(slot, doc.bytes)
        }
    }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? { nil }

    /// Contact documents carry no engagement (it comes by `engagement.record`): nothing to apply.
    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {}

    public func remove(slot: Int, context: inout WriteContext) throws {
        var index = context.book.takePart(Index.self) ?? Index()
        for e in 0..<3 where slot < index.columns[e].count { index.columns[e][slot] = .nan }
        context.book.setPart(index)
    }

    /// Moves one event time forward (never back); returns whether it moved.
    func record(event: Int, slot: Int, at t: Double, context: inout WriteContext) throws -> Bool {
        var index = context.book.takePart(Index.self) ?? Index()
        defer { context.book.setPart(index) }
        if let old = index.time(event, slot), old >= t { return false }
        index.set(event, slot, t)
        context.changed(slot, in: name)
        return true
    }

    /// Forgets one event time of a contact; the time it had, or `nil` (nothing written).
    func clear(event: Int, slot: Int, context: inout WriteContext) throws -> Double? {
        var index = context.book.takePart(Index.self) ?? Index()
        defer { context.book.setPart(index) }
        guard let old = index.time(event, slot) else { return nil }
        index.set(event, slot, .nan)
        context.changed(slot, in: name)
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

    public var columnNames: [String] { Self.events.map { "last_\($0)_at" } }
}

extension EngagementDimension.Index: ResidentSize {
    /// Three time columns, grown only as far as the highest slot with an event.
    var residentBytes: Int { ResidentBytes.array(columns) }
}
