import SegmentCore
import WireJSON

/// System fields (`email`, `name`, `created_at`) and typed custom fields.
///
/// Custom fields are declared with `fields.define {name, type}` (text, number, date, boolean)
/// before contacts carry them; values are checked against the type. Contact keys: `name`
/// (string or null) and `fields` (`{field: value}`; null or "" clears a value).
public struct FieldDimension: DimensionProvider {
    public let name = "field"
    public var contactKeys: [String] { ["name", "fields"] }
    public var isDashboardDimension: Bool { true }
    public static let systemFields: [FieldDefinition] = [
        FieldDefinition(name: "email", type: .text, system: true),
        FieldDefinition(name: "name", type: .text, system: true),
        FieldDefinition(name: "created_at", type: .date, system: true),
    ]
    public static let maxTextLength = 10_000

    public init() {}

    public var descriptor: DimensionDescriptor {
        DimensionDescriptor(
            name: name, summary: "System fields (email, name, created_at) and typed custom fields.",
            operators: [
                .init("equals", value: "string | number | boolean | date", "the value equals (text: case-insensitive; date-only: that whole day)"),
                .init("not_equals", value: "string | number | boolean | date", "the value differs, or the contact has none"),
                .init("contains", value: "string", "text contains the value, case-insensitively"),
                .init("not_contains", value: "string", "text does not contain the value, or the contact has none"),
                .init("greater_than", value: "number | date", "number greater than, or date after (after the day's end for a date-only value)"),
                .init("less_than", value: "number | date", "number less than, or date before (before the day's start for a date-only value)"),
                .init("between", value: "[low, high]", "inclusive range of numbers or dates (date-only: low's start to high's end)"),
                .init("is_empty", value: "none", "the contact has no value"),
                .init("is_not_empty", value: "none", "the contact has a value"),
            ],
            keys: ["field": "required: the field's name (system or custom)"])
    }

    /// Before documents: `field_def` (definitions) and `contact_fields` (one JSON document
    /// per contact).
    public var legacy: LegacyStorage? {
        LegacyStorage(
            migrations: [
                StoreMigration("field.v1", sql: """
                    CREATE TABLE field_def (name TEXT PRIMARY KEY, type TEXT NOT NULL, created_at REAL NOT NULL);
                    CREATE TABLE contact_field (contact_id INTEGER NOT NULL, field TEXT NOT NULL, value, PRIMARY KEY (contact_id, field)) WITHOUT ROWID;
                    """),
                // One row per contact (a JSON object of its values) instead of one per value:
                // creating a contact with six fields wrote six rows, the largest share of ingest.
                StoreMigration("field.v2", sql: """
                    CREATE TABLE contact_fields (contact_id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
                    """, convert: Self.moveValuesIntoDocuments),
            ],
            dropTables: ["contact_fields", "field_def"],
            definitionKeys: { [name] book in Self.index(book, name).order }
        ) { sql, book in
            var index = Index()
            try sql.forEachRow("SELECT name, type FROM field_def ORDER BY rowid", []) { row in
                guard let name = row[0].string, let type = row[1].string.flatMap(FieldType.init(rawValue:)) else { return }
                index.define(name, type: type)
            }
            try sql.forEachRow("SELECT contact_id, doc FROM contact_fields", []) { row in
                guard let slot = row[0].int64.map(Int.init), book.alive.contains(slot), let text = row[1].string else { return }
                Self.read(Array(text.utf8), slot: slot, into: &index)
            }
            book.setPart(index)
        }
    }

    /// The field dimension's part of the book.
    struct Index: BookPart {
        /// Custom fields by name, and their names in declaration order for listing.
        private(set) var definitions: [String: FieldDefinition] = [:]
        private(set) var order: [String] = []
        /// Columns of `name` and of every custom field, in the order they were added, and
        /// each one's place. An array, not a dictionary of columns: a write updates a column
        /// in place and reads it without copying it (a dictionary's getter copies the column,
        /// a retain per storage, and that was per field per contact on ingest).
        private(set) var columns: [FieldColumn] = [FieldColumn(type: .text)]
        private(set) var position: [String: Int] = ["name": 0]
        /// The order a stored document lists its values in (sorted by name), with each
        /// name's JSON key bytes (`"name":`).
        private(set) var documentOrder: [(position: Int, key: [UInt8])] = Index.documentOrder(["name": 0])

        func column(_ field: String) -> FieldColumn? { position[field].map { columns[$0] } }

        /// Declares a custom field: its definition, its place in the listing, its column.
        mutating func define(_ field: String, type: FieldType) {
            definitions[field] = FieldDefinition(name: field, type: type, system: false)
            order.append(field)
            position[field] = columns.count
            columns.append(FieldColumn(type: type))
            documentOrder = Self.documentOrder(position)
        }

        /// Gives custom field `field` a new name; its column, values and place stay.
        mutating func rename(_ field: String, to new: String) {
            guard var def = definitions.removeValue(forKey: field), let p = position.removeValue(forKey: field) else { return }
            def.name = new
            definitions[new] = def
            order = order.map { $0 == field ? new : $0 }
            position[new] = p
            documentOrder = Self.documentOrder(position)
        }

        /// Puts the listing in `names`' order (the same names).
        mutating func reorder(_ names: [String]) {
            if Set(names) == Set(order) { order = names }
        }

        /// Forgets custom field `field` and its column.
        mutating func undefine(_ field: String) {
            guard definitions.removeValue(forKey: field) != nil, let p = position.removeValue(forKey: field) else { return }
            order.removeAll { $0 == field }
            columns.remove(at: p)
            for (name, q) in position where q > p { position[name] = q - 1 }
            documentOrder = Self.documentOrder(position)
        }

        static func documentOrder(_ position: [String: Int]) -> [(position: Int, key: [UInt8])] {
            position.sorted { $0.key < $1.key }.map { name, p in
                var key: [UInt8] = []
                JSONValue.string(name).write(into: &key)
                return (p, key + [UInt8(ascii: ":")])
            }
        }

        /// Clears every value of `slot`.
        mutating func clear(slot: Int) {
            for p in columns.indices { _ = columns[p].update(nil, at: slot) }
        }

        /// Sets one value in place; whether it changed.
        mutating func update(_ field: String, _ value: FieldValue?, at slot: Int) -> Bool {
            guard let p = position[field] else { return false }
            return columns[p].update(value, at: slot)
        }

        func definition(_ field: String) -> FieldDefinition? {
            FieldDimension.systemFields.first { $0.name == field } ?? definitions[field]
        }
    }

    struct Change: ContactChange {
        /// Field → new value (`nil` clears).
        let values: [(String, FieldValue?)]
    }

    static func index(_ book: Book, _ name: String) -> Index { book.part(Index.self) ?? Index() }

    /// A contact's document is the JSON object of its values (sorted keys); a custom field's
    /// definition (under its name) is `{"type": …, "position": N}`, N its place in the listing.
    public func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : Self.index(book, name)
        var declared: [(position: Int, name: String, type: FieldType)] = []
        for (field, doc) in stored.definitions {
            guard case .object(let object)? = try? JSONParser.parse(doc), let type = object["type"]?.stringValue.flatMap(FieldType.init(rawValue:)),
                let position = object["position"]?.intValue
            else { continue }
            declared.append((Int(position), field, type))
        }
        declared.sort { $0.position < $1.position }
        if stored.replacing != nil {
            // Another node may have changed the fields: drop those gone (their holders'
            // documents come back in this load), declare the new ones, keep the listing order.
            for field in index.order where !declared.contains(where: { $0.name == field && $0.type == index.definitions[field]?.type }) {
                index.undefine(field)
            }
            for field in declared where index.definitions[field.name] == nil { index.define(field.name, type: field.type) }
            index.reorder(declared.map(\.name))
        } else {
            for field in declared { index.define(field.name, type: field.type) }
        }
        stored.replacing?.forEach { index.clear(slot: $0) }
        try stored.forEachDocument { slot, doc in
            guard book.alive.contains(slot) else { return }
            Self.read(doc, slot: slot, into: &index)
        }
        book.setPart(index)
    }

    static func read(_ doc: [UInt8], slot: Int, into index: inout Index) {
        guard case .object(let values)? = try? JSONParser.parse(doc) else { return }
        for (field, raw) in values {
            guard let type = index.definition(field)?.type, let value = Self.decode(raw, type) else { continue }
            _ = index.update(field, value, at: slot)
        }
    }

    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let index = Self.index(book, name)
        slots.forEach { slot in emit(slot, Self.document(slot: slot, index: index)) }
    }

    public func definition(_ key: String, in book: Book) -> [UInt8]? {
        let index = Self.index(book, name)
        guard let def = index.definitions[key], let position = index.order.firstIndex(of: key) else { return nil }
        var doc: [UInt8] = []
        JSONValue.object(["type": .string(def.type.rawValue), "position": .int(Int64(position))]).write(into: &doc)
        return doc
    }

    /// Marks every definition changed (and `gone`, deleted): positions are rewritten whole, so
    /// the listing's order survives deletes and renames. Fields are few.
    static func definitionsChanged(_ index: Index, gone: [String] = [], dimension: String, context: inout WriteContext) {
        for field in index.order + gone { context.changedDefinition(field, in: dimension) }
    }

    /// `field.v2`: the v1 rows (one per value) become one document per contact, numbers moved
    /// exactly (SQLite's own JSON functions print reals with 16 digits at most).
    @Sendable static func moveValuesIntoDocuments(_ sql: any SQLExecutor) throws {
        var current: Int64?
        var doc: [String: JSONValue] = [:]
        func flush() throws {
            if let current, !doc.isEmpty {
                try sql.execute("INSERT INTO contact_fields(contact_id, doc) VALUES (?, ?)", [.integer(current), .text(JSONValue.object(doc).serialized())])
            }
            doc = [:]
        }
        try sql.forEachRow("SELECT contact_id, field, value FROM contact_field ORDER BY contact_id", []) { row in
            guard let id = row[0].int64, let field = row[1].string else { return }
            if id != current {
                try flush()
                current = id
            }
            switch row[2] {
            case .text(let s): doc[field] = .string(s)
            case .real(let d): doc[field] = .double(d)
            case .integer(let i): doc[field] = .int(i)
            case .null, .blob: break
            }
        }
        try flush()
        try sql.execute("DROP TABLE contact_field", [])
    }

    /// A contact's stored document: every value it has, as a JSON object with sorted keys
    /// (the bytes `JSONValue.serialized()` would write), or `nil` when it has none. Written
    /// straight into bytes: building a dictionary to serialize it was a third of a field write.
    static func document(slot: Int, index: Index) -> [UInt8]? {
        var out: [UInt8] = [UInt8(ascii: "{")]
        index.columns.withUnsafeBufferPointer { columns in
            for (position, key) in index.documentOrder {
                let value: JSONValue
                switch columns[position].value(at: slot) {
                case nil: continue
                case .text(let s)?: value = .string(s)
                case .number(let d)?, .date(let d)?: value = .double(d)
                case .boolean(let b)?: value = .bool(b)
                }
                if out.count > 1 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: key)
                value.write(into: &out)
            }
        }
        guard out.count > 1 else { return nil }
        out.append(UInt8(ascii: "}"))
        return out
    }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        var values: [(String, FieldValue?)] = []
        if let raw = doc.object["name"] {
            values.append(("name", try check(raw, type: .text, path: doc.path.member("name"), time: time)))
        }
        if doc.has("fields") {
            let fields = try doc.object("fields")
            let index = Self.index(book, name)
            let checkField = { (key: String, raw: JSONValue) throws(SegmentError) -> FieldValue? in
                guard let def = index.definitions[key] else {
                    let path = fields.path.member(key)
                    if Self.systemFields.contains(where: { $0.name == key }) {
                        throw .invalidParams(path: path, "\(key) is a system field; set name at the top level, email and created_at cannot be set")
                    }
                    throw .invalidParams(path: path, "unknown field \"\(key)\"; declare it first with fields.define")
                }
                return try self.check(raw, type: def.type, path: fields.path.member(key), time: time)
            }
            do {
                for (key, raw) in fields.object { values.append((key, try checkField(key, raw))) }
            } catch {
                // Sorted only when something is wrong, so the error names the first bad key.
                for key in fields.object.keys.sorted() { _ = try checkField(key, fields.object[key]!) }
                throw error
            }
        }
        return values.isEmpty ? nil : Change(values: values)
    }

    /// Checks a JSON value against a field type; `nil` means "no value".
    func check(_ raw: JSONValue, type: FieldType, path: String, time: ISOTime) throws(SegmentError) -> FieldValue? {
        if raw.isNull { return nil }
        switch type {
        case .text:
            guard let s = raw.stringValue else { throw .invalidParams(path: path, "expected text, got \(raw.typeName)") }
            // UTF-8 bytes bound the characters from above: count characters only past that.
            guard s.utf8.count <= Self.maxTextLength || s.count <= Self.maxTextLength else { throw .invalidParams(path: path, "text is at most \(Self.maxTextLength) characters") }
            return s.isEmpty ? nil : .text(s)
        case .number:
            guard let d = raw.doubleValue, d.isFinite else { throw .invalidParams(path: path, "expected a number, got \(raw.typeName)") }
            return .number(d)
        case .date:
            guard let s = raw.stringValue else { throw .invalidParams(path: path, "expected a date string, got \(raw.typeName)") }
            if s.isEmpty { return nil }
            guard let t = time.parse(s) else {
                throw .invalidParams(path: path, "expected an ISO 8601 date or time like 2026-01-31 or 2026-01-31T08:00:00Z, got \"\(s)\"")
            }
            return .date(t.start)
        case .boolean:
            guard let b = raw.boolValue else { throw .invalidParams(path: path, "expected true or false, got \(raw.typeName)") }
            return .boolean(b)
        }
    }

    /// A stored value back into a field value (booleans written by `field.v1` are 0 and 1).
    static func decode(_ value: JSONValue, _ type: FieldType) -> FieldValue? {
        switch type {
        case .text: return value.stringValue.map(FieldValue.text)
        case .number: return value.doubleValue.map(FieldValue.number)
        case .date: return value.doubleValue.map(FieldValue.date)
        case .boolean: return value.boolValue.map(FieldValue.boolean) ?? value.intValue.map { .boolean($0 != 0) }
        }
    }

    /// Takes the index out of the book once for the whole batch.
    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
            for write in batch { apply(write.change, slot: write.slot, index: &index, context: &context) }
        }
    }

    private func apply(_ change: (any ContactChange)?, slot: Int, index: inout Index, context: inout WriteContext) {
        guard let change = change as? Change else { return }
        var changed = false
        for (field, value) in change.values where index.update(field, value, at: slot) { changed = true }
        guard changed else { return }
        context.changed(slot, in: name)
    }

    public func remove(slot: Int, context: inout WriteContext) throws {
        var index = context.book.takePart(Index.self) ?? Index()
        index.clear(slot: slot)
        context.book.setPart(index)
    }

    public func render(slot: Int, book: Book) -> [String: JSONValue] {
        let index = Self.index(book, name)
        var fields: [String: JSONValue] = [:]
        for field in index.order {
            fields[field] = Self.json(index.column(field)?.value(at: slot))
        }
        return ["name": Self.json(index.column("name")?.value(at: slot)), "fields": .object(fields)]
    }

    static func json(_ value: FieldValue?) -> JSONValue {
        switch value {
        case nil: return .null
        case .text(let s)?: return .string(s)
        case .number(let d)?: return Int64(exactly: d).map(JSONValue.int) ?? .double(d)
        case .date(let d)?: return .string(ISOTime.format(d))
        case .boolean(let b)?: return .bool(b)
        }
    }

    public var columnNames: [String] { ["name", "custom fields by name"] }

    public func column(_ column: String, book: Book) -> ColumnReader? {
        let index = Self.index(book, name)
        guard let values = index.column(column) else { return nil }
        return ColumnReader { Self.json(values.value(at: $0)) }
    }
}

extension FieldDimension.Index: ResidentSize {
    /// Every column (the values), and the declarations that name them.
    var residentBytes: Int {
        ResidentBytes.array(columns) + ResidentBytes.dictionary(definitions) + ResidentBytes.array(order)
            + ResidentBytes.dictionary(position) + ResidentBytes.array(documentOrder, element: { ResidentBytes.array($0.key) })
    }
}
