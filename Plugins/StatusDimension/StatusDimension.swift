import SegmentCore
import WireJSON

/// The subscription status of a contact: `active`, `pending`, `unsubscribed`, `hard_bounce`.
///
/// New contacts are `active` unless their document says otherwise. The send audience
/// (status `active` and not suppressed) is defined through this dimension's filters.
public struct StatusDimension: DimensionProvider {
    public static let statuses = ["active", "pending", "unsubscribed", "hard_bounce"]
    public let name = "status"
    public var contactKeys: [String] { ["status"] }
    public var isDashboardDimension: Bool { true }

    public init() {}

    public var descriptor: DimensionDescriptor {
        DimensionDescriptor(
            name: name, summary: "Subscription status: \(Self.statuses.joined(separator: ", ")).",
            operators: [
                .init("equals", value: "string", "the contact's status is the value"),
                .init("not_equals", value: "string", "the contact's status is not the value"),
                .init("in", value: "[string]", "the contact's status is one of the values"),
            ])
    }

    /// Before documents: one row per contact in `contact_status`.
    public var legacy: LegacyStorage? {
        LegacyStorage(
            migrations: [StoreMigration("status.v1", sql: "CREATE TABLE contact_status (contact_id INTEGER PRIMARY KEY, status INTEGER NOT NULL)")],
            dropTables: ["contact_status"]
        ) { sql, book in
            var column = StatusIndex()
            try sql.forEachRow("SELECT contact_id, status FROM contact_status", []) { row in
                guard let slot = row[0].int64, let code = row[1].int64, book.alive.contains(Int(slot)) else { return }
                column.codes.set(UInt8(code), at: Int(slot))
            }
            book.setPart(column)
        }
    }

    struct Change: ContactChange { let code: UInt8 }

    /// The dimension's part of the book: each slot's status code.
    public struct StatusIndex: BookPart {
        public var codes = CodeColumn(codeCount: StatusDimension.statuses.count)
        public init() {}
    }

    /// Case-insensitive, like labels and text: `"Active"` is `active`. Replies always spell
    /// the status in lower case.
    func code(_ text: String, path: String) throws(SegmentError) -> UInt8 {
        guard let i = Self.statuses.firstIndex(of: text.lowercased()) else {
            throw .invalidParams(path: path, "unknown status \"\(text)\"; expected one of \(Self.statuses.joined(separator: ", "))")
        }
        return UInt8(i)
    }

    func index(_ book: Book) -> CodeColumn {
        (book.part(StatusDimension.StatusIndex.self) ?? StatusDimension.StatusIndex()).codes
    }

    /// A contact's document is its status code, one byte.
    public func load(_ stored: StoredParts, into book: inout Book) throws {
        var column = stored.replacing == nil ? StatusIndex() : book.takePart(StatusIndex.self) ?? StatusIndex()
        stored.replacing?.forEach { column.codes.set(CodeColumn.none, at: $0) }
        try stored.forEachDocument { slot, doc in
            guard book.alive.contains(slot), let code = doc.first, Int(code) < Self.statuses.count else { return }
            column.codes.set(code, at: slot)
        }
        book.setPart(column)
    }

    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let column = index(book)
        slots.forEach { slot in
            let code = column.code(at: slot)
            emit(slot, code == CodeColumn.none ? nil : [code])
        }
    }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        guard doc.has("status") else { return nil }
        return Change(code: try code(try doc.string("status"), path: doc.path.member("status")))
    }

    /// Takes the index out of the book once for the whole batch.
    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: StatusIndex.init) { column, context in
            for write in batch {
                let new: UInt8
                if let change = write.change as? Change { new = change.code } else if write.isNew { new = 0 } else { continue }
                if column.codes.code(at: write.slot) == new { continue }
                column.codes.set(new, at: write.slot)
                context.changed(write.slot, in: name)
            }
        }
    }

    public func remove(slot: Int, context: inout WriteContext) throws {
        var column = context.book.takePart(StatusIndex.self) ?? StatusIndex()
        column.codes.set(CodeColumn.none, at: slot)
        context.book.setPart(column)
    }

    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
        let op = try filter.op(of: name, allowed: ["equals", "not_equals", "in"])
        let values = op == "in" ? try filter.nonEmptyStrings() : [try filter.string("value")]
        var codes: [UInt8] = []
        for (i, v) in values.enumerated() {
            codes.append(try code(v, path: op == "in" ? filter.path.member("value").index(i) : filter.path.member("value")))
        }
        return StatusPredicate(dimension: name, codes: codes, negated: op == "not_equals")
    }

    public func render(slot: Int, book: Book) -> [String: JSONValue] {
        let c = index(book).code(at: slot)
        return ["status": c == CodeColumn.none ? .null : .string(Self.statuses[Int(c)])]
    }

    public var columnNames: [String] { ["status"] }

    public func column(_ column: String, book: Book) -> ColumnReader? {
        guard column == "status" else { return nil }
        let codes = index(book)
        return ColumnReader { slot in
            let c = codes.code(at: slot)
            return c == CodeColumn.none ? .null : .string(Self.statuses[Int(c)])
        }
    }
}

struct StatusPredicate: ContactPredicate {
    let dimension: String
    let codes: [UInt8]
    let negated: Bool
    var aspects: Set<String> { ["status"] }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        resolve(in: book, at: now, within: book.alive)
    }

    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        let column = (book.part(StatusDimension.StatusIndex.self) ?? StatusDimension.StatusIndex()).codes
        let hit = column.union(of: codes, within: candidates)
        return negated ? candidates.subtracting(hit) : hit
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        let code = book.part(StatusDimension.StatusIndex.self)?.codes.code(at: slot) ?? CodeColumn.none
        return codes.contains(code) != negated
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let code = book.part(StatusDimension.StatusIndex.self)?.codes.code(at: slot) ?? CodeColumn.none
        let status = code == CodeColumn.none ? "none" : StatusDimension.statuses[Int(code)]
        let wanted = codes.map { StatusDimension.statuses[Int($0)] }.joined(separator: ", ")
        let ok = matches(slot: slot, in: book, at: now)
        return "status \(status) \(ok ? "is" : "is not") \(negated ? "other than " : codes.count > 1 ? "one of " : "")\(wanted)"
    }
}

extension StatusDimension.StatusIndex: ResidentSize {
    public var residentBytes: Int { codes.residentBytes }
}

/// Status decides the send audience: `active` contacts are let in; `unsubscribed`,
/// `hard_bounce` and `pending` ones are kept out, reported under those names.
extension StatusDimension: AudienceProvider {
    static let excluded = ["unsubscribed", "hard_bounce", "pending"]

    func contacts(with status: String, in book: Book) -> ContactSet {
        guard let code = Self.statuses.firstIndex(of: status) else { return ContactSet() }
        return index(book).union(of: [UInt8(code)], within: book.alive)
    }

    public func sendable(in book: Book) -> ContactSet { contacts(with: "active", in: book) }

    public func exclusions(in book: Book) -> [(reason: String, contacts: ContactSet)] {
        Self.excluded.map { ($0, contacts(with: $0, in: book)) }
    }

    public func whyNotSendable(slot: Int, in book: Book) -> String? {
        let code = index(book).code(at: slot)
        guard code != 0 else { return nil }  // active
        return "status is \(code == CodeColumn.none ? "unknown" : Self.statuses[Int(code)]), not active"
    }

    public func breakdown(in book: Book) -> [String: Int] {
        let codes = index(book)
        var counts = [Int](repeating: 0, count: Self.statuses.count)
        book.alive.forEach { slot in
            let code = codes.code(at: slot)
            if code != CodeColumn.none { counts[Int(code)] += 1 }
        }
        var out: [String: Int] = [:]
        for (i, n) in counts.enumerated() where n > 0 { out[Self.statuses[i]] = n }
        return out
    }

    public func restatement(of filter: JSONValue) -> String? {
        guard filter["dimension"] == .string(name) else { return nil }
        switch filter["op"]?.stringValue {
        case "equals" where filter["value"] == "active", "in" where filter["value"] == ["active"]:
            return "status = active: this is the whole active list"
        default: return nil
        }
    }
}
