import SegmentCore
import WireJSON

/// The customer-journey stage: `aware`, `engaged`, `customer`, `loyal_customer`, `promoter`
/// (or none), with a `lost` flag that overlays the stage.
///
/// Contact keys: `funnel` (a stage, or null to clear it) and `lost` (boolean).
/// Filters: `equals`, `not_equals`, `in`, each optionally with `"lost": true|false`; a filter
/// may also be `lost` alone (`{"dimension": "funnel", "lost": true}`).
public struct FunnelDimension: DimensionProvider {
    public static let stages = ["aware", "engaged", "customer", "loyal_customer", "promoter"]
    public let name = "funnel"
    public var contactKeys: [String] { ["funnel", "lost"] }
    public var isDashboardDimension: Bool { true }

    public init() {}

    public var descriptor: DimensionDescriptor {
        DimensionDescriptor(
            name: name, summary: "Journey stage: \(Self.stages.joined(separator: ", ")), plus the lost flag.",
            operators: [
                .init("equals", value: "string", "the contact is at this stage"),
                .init("not_equals", value: "string", "the contact is not at this stage (includes contacts without a stage)"),
                .init("in", value: "[string]", "the contact is at one of these stages"),
            ],
            keys: ["lost": "optional boolean ANDed with the stage test; alone, it filters on the lost flag only"])
    }

    /// Before documents: one row per contact in `contact_funnel`.
    public var legacy: LegacyStorage? {
        LegacyStorage(
            migrations: [StoreMigration("funnel.v1", sql: """
                CREATE TABLE contact_funnel (contact_id INTEGER PRIMARY KEY, stage INTEGER, lost INTEGER NOT NULL DEFAULT 0)
                """)],
            dropTables: ["contact_funnel"]
        ) { sql, book in
            var index = Index()
            try sql.forEachRow("SELECT contact_id, stage, lost FROM contact_funnel", []) { row in
                guard let slot = row[0].int64.map(Int.init), book.alive.contains(slot) else { return }
                if let stage = row[1].int64 { index.stages.set(UInt8(stage), at: slot) }
                if row[2].int64 == 1 { index.lost.insert(slot) }
            }
            book.setPart(index)
        }
    }

    /// The funnel's part of the book.
    struct Index: BookPart {
        var stages = CodeColumn(codeCount: FunnelDimension.stages.count)
        var lost = ContactSet()
    }

    struct Change: ContactChange {
        /// `.some(nil)` clears the stage; `nil` leaves it.
        let stage: UInt8??
        let lost: Bool?
    }

    /// Case-insensitive, like labels and text: `"Loyal_Customer"` is `loyal_customer`.
    /// Replies always spell the stage in lower case.
    func code(_ text: String, path: String) throws(SegmentError) -> UInt8 {
        guard let i = Self.stages.firstIndex(of: text.lowercased()) else {
            throw .invalidParams(path: path, "unknown funnel stage \"\(text)\"; expected one of \(Self.stages.joined(separator: ", "))")
        }
        return UInt8(i)
    }

    /// A contact's document is two bytes: its stage code (255 for none) and the lost flag.
    public func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
        stored.replacing?.forEach { slot in
            index.stages.set(CodeColumn.none, at: slot)
            index.lost.remove(slot)
        }
        try stored.forEachDocument { slot, doc in
            guard book.alive.contains(slot), doc.count == 2 else { return }
            if Int(doc[0]) < Self.stages.count { index.stages.set(doc[0], at: slot) }
            if doc[1] == 1 { index.lost.insert(slot) }
        }
        book.setPart(index)
    }

    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let index = book.part(Index.self) ?? Index()
        slots.forEach { slot in
            let stage = index.stages.code(at: slot), lost = index.lost.contains(slot)
            emit(slot, stage == CodeColumn.none && !lost ? nil : [stage, lost ? 1 : 0])
        }
    }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        guard doc.object["funnel"] != nil || doc.has("lost") else { return nil }
        var stage: UInt8?? = nil
        if let raw = doc.object["funnel"] {
            if raw.isNull {
                stage = .some(nil)
            } else {
                stage = .some(try code(try doc.string("funnel"), path: doc.path.member("funnel")))
            }
        }
        return Change(stage: stage, lost: try doc.optionalBool("lost"))
    }

    /// Takes the index out of the book once for the whole batch.
    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
            for write in batch {
                guard let change = write.change as? Change else { continue }
                let slot = write.slot
                let oldStage = index.stages.code(at: slot)
                let oldLost = index.lost.contains(slot)
                let newStage = change.stage.map { $0 ?? CodeColumn.none } ?? oldStage
                let newLost = change.lost ?? oldLost
                guard newStage != oldStage || newLost != oldLost else { continue }
                index.stages.set(newStage, at: slot)
                index.lost.update(slot, member: newLost)
                context.changed(slot, in: name)
            }
        }
    }

    public func remove(slot: Int, context: inout WriteContext) throws {
        var index = context.book.takePart(Index.self) ?? Index()
        index.stages.set(CodeColumn.none, at: slot)
        index.lost.remove(slot)
        context.book.setPart(index)
    }

    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value", "lost"])
        let lost = try filter.optionalBool("lost")
        guard filter.has("op") else {
            guard let lost else {
                throw .invalidParams(path: filter.path.member("op"), "required (or give \"lost\" alone)")
            }
            try filter.rejectValue(for: "lost")
            return FunnelPredicate(dimension: name, codes: nil, negated: false, lost: lost)
        }
        let op = try filter.op(of: name, allowed: ["equals", "not_equals", "in"])
        let values = op == "in" ? try filter.nonEmptyStrings() : [try filter.string("value")]
        var codes: [UInt8] = []
        for (i, v) in values.enumerated() {
            codes.append(try code(v, path: op == "in" ? filter.path.member("value").index(i) : filter.path.member("value")))
        }
        return FunnelPredicate(dimension: name, codes: codes, negated: op == "not_equals", lost: lost)
    }

    public func render(slot: Int, book: Book) -> [String: JSONValue] {
        let index = book.part(Index.self) ?? Index()
        let c = index.stages.code(at: slot)
        return ["funnel": c == CodeColumn.none ? .null : .string(Self.stages[Int(c)]), "lost": .bool(index.lost.contains(slot))]
    }

    public var columnNames: [String] { ["funnel", "lost"] }

    public func column(_ column: String, book: Book) -> ColumnReader? {
        let index = book.part(Index.self) ?? Index()
        switch column {
        case "funnel":
            return ColumnReader { slot in
                let c = index.stages.code(at: slot)
                return c == CodeColumn.none ? .null : .string(Self.stages[Int(c)])
            }
        case "lost":
            return ColumnReader { .bool(index.lost.contains($0)) }
        default:
            return nil
        }
    }
}

struct FunnelPredicate: ContactPredicate {
    let dimension: String
    /// `nil`: no stage test (a `lost`-only filter).
    let codes: [UInt8]?
    let negated: Bool
    let lost: Bool?
    var aspects: Set<String> { ["funnel"] }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        resolve(in: book, at: now, within: book.alive)
    }

    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        let index = book.part(FunnelDimension.Index.self) ?? FunnelDimension.Index()
        var set = candidates
        if let codes {
            let hit = index.stages.union(of: codes, within: candidates)
            set = negated ? set.subtracting(hit) : hit
        }
        if let lost {
            if lost { set.formIntersection(index.lost) } else { set.subtract(index.lost) }
        }
        return set
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        let index = book.part(FunnelDimension.Index.self) ?? FunnelDimension.Index()
        if let codes, codes.contains(index.stages.code(at: slot)) == negated { return false }
        if let lost, index.lost.contains(slot) != lost { return false }
        return true
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let index = book.part(FunnelDimension.Index.self) ?? FunnelDimension.Index()
        let c = index.stages.code(at: slot)
        let stage = c == CodeColumn.none ? "no stage" : "stage \(FunnelDimension.stages[Int(c)])"
        var parts: [String] = []
        if let codes {
            let wanted = codes.map { FunnelDimension.stages[Int($0)] }.joined(separator: ", ")
            let ok = codes.contains(c) != negated
            parts.append("\(stage) \(ok ? "is" : "is not") \(negated ? "other than " : codes.count > 1 ? "one of " : "")\(wanted)")
        }
        if let lost {
            parts.append("lost is \(index.lost.contains(slot)) (wanted \(lost))")
        }
        return parts.joined(separator: "; ")
    }
}

extension FunnelDimension.Index: ResidentSize {
    var residentBytes: Int { stages.residentBytes + lost.residentBytes }
}
