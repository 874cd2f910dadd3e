import SegmentCore
import WireJSON

/// Labels (tags): any number per contact, compared case-insensitively, shown as first written.
///
/// Contact keys: `labels` (replaces the set), `add_labels`, `remove_labels` (applied in that
/// order). Filters: `contains` (a label, or a list: has all), `contains_any` (a list: has at
/// least one), `not_contains` (a label or a list: has none). A label no contact carries is
/// valid in a filter and matches nobody (lint reports it as stale).
public struct LabelDimension: DimensionProvider {
    public let name = "label"
    public var contactKeys: [String] { ["labels", "add_labels", "remove_labels"] }
    public var isDashboardDimension: Bool { true }
    public static let maxLabelLength = 200

    public init() {}

    public var descriptor: DimensionDescriptor {
        DimensionDescriptor(
            name: name, summary: "Labels (tags), compared case-insensitively.",
            operators: [
                .init("contains", value: "string | [string]", "has the label, or every label of the list"),
                .init("contains_any", value: "[string]", "has at least one label of the list"),
                .init("not_contains", value: "string | [string]", "has none of the labels"),
            ])
    }

    /// Before documents: `label` (definitions) and `contact_labels` (one JSON array of keys
    /// per contact).
    public var legacy: LegacyStorage? {
        LegacyStorage(
            migrations: [
                StoreMigration("label.v1", sql: """
                    CREATE TABLE label (key TEXT PRIMARY KEY, name TEXT NOT NULL, last_added_at REAL);
                    CREATE TABLE contact_label (contact_id INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (contact_id, key)) WITHOUT ROWID;
                    CREATE INDEX contact_label_by_key ON contact_label(key);
                    """),
                // One row per contact (a JSON array of its label keys) instead of one per label:
                // fewer rows to write on ingest; filters never read SQL, they use the bitmaps.
                StoreMigration("label.v2", sql: """
                    CREATE TABLE contact_labels (contact_id INTEGER PRIMARY KEY, keys TEXT NOT NULL);
                    INSERT INTO contact_labels(contact_id, keys)
                        SELECT contact_id, json_group_array(key) FROM (SELECT contact_id, key FROM contact_label ORDER BY contact_id, key)
                        GROUP BY contact_id;
                    DROP TABLE contact_label;
                    """),
            ],
            dropTables: ["contact_labels", "label"],
            definitionKeys: { book in Array((book.part(Index.self) ?? Index()).labels.keys) }
        ) { sql, book in
            var index = Index()
            try sql.forEachRow("SELECT key, name, last_added_at FROM label", []) { row in
                guard let key = row[0].string, let name = row[1].string else { return }
                index.labels[key] = Entry(name: name, lastAddedAt: row[2].double)
            }
            try sql.forEachRow("SELECT contact_id, keys FROM contact_labels", []) { row in
                guard let slot = row[0].int64.map(Int.init), book.alive.contains(slot), let text = row[1].string,
                    case .array(let keys)? = try? JSONParser.parse(text)
                else { return }
                for case .string(let key) in keys { index.labels[key]?.members.insert(slot) }
            }
            book.setPart(index)
        }
    }

    /// One label: its display name, members and when a contact last gained it.
    public struct Entry: Sendable {
        public var name: String
        public var members = ContactSet()
        public var lastAddedAt: Double?
    }

    /// The label dimension's part of the book, keyed by lower-cased label.
    public struct Index: BookPart {
        public var labels: [String: Entry] = [:]

        public func labels(of slot: Int) -> [String] {
            labels.values.filter { $0.members.contains(slot) }.map(\.name).sorted { $0.lowercased() < $1.lowercased() }
        }
    }

    struct Change: ContactChange {
        let replace: [String]?
        let add: [String]
        let remove: [String]
    }

    func checked(_ doc: ParamReader, _ key: String) throws(SegmentError) -> [String]? {
        guard let list = try doc.optionalStrings(key) else { return nil }
        for (i, label) in list.enumerated() {
            let trimmed = label.trimmingWhitespace
            guard !trimmed.isEmpty else { throw .invalidParams(path: doc.path.member(key).index(i), "a label cannot be empty") }
            // UTF-8 bytes bound the characters from above: count characters only past that.
            guard label.utf8.count <= Self.maxLabelLength || label.count <= Self.maxLabelLength else {
                throw .invalidParams(path: doc.path.member(key).index(i), "a label is at most \(Self.maxLabelLength) characters")
            }
        }
        return list.map { $0.trimmingWhitespace }
    }

    /// A contact's document is the JSON array of its label keys, sorted; a label's definition
    /// (under its key) is `{"name": display name, "last_added_at": time or null}`.
    public func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
        var definitions: [String: Entry] = [:]
        for (key, doc) in stored.definitions {
            guard case .object(let object)? = try? JSONParser.parse(doc), let display = object["name"]?.stringValue else { continue }
            definitions[key] = Entry(name: display, members: index.labels[key]?.members ?? ContactSet(), lastAddedAt: object["last_added_at"]?.doubleValue)
        }
        index.labels = definitions
        if let replacing = stored.replacing {
            for key in Array(index.labels.keys) { index.labels[key]!.members.subtract(replacing) }
        }
        try stored.forEachDocument { slot, doc in
            guard book.alive.contains(slot), case .array(let keys)? = try? JSONParser.parse(doc) else { return }
            for case .string(let key) in keys { index.labels[key]?.members.insert(slot) }
        }
        book.setPart(index)
    }

    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let index = book.part(Index.self) ?? Index()
        // Labels in key order, each with its key's JSON bytes, once per write: a contact's
        // document is then its labels in that order, with no sort and no lookup per contact.
        let sorted = index.labels.sorted { $0.key < $1.key }.map { key, entry -> (members: ContactSet, json: [UInt8]) in
            var json: [UInt8] = []
            JSONValue.string(key).write(into: &json)
            return (entry.members, json)
        }
        // Few changed contacts and many labels: only the labels they carry are looked at.
        let carried = sorted.count > 64 ? sorted.filter { !$0.members.intersection(slots).isEmpty } : sorted
        var doc: [UInt8] = []
        slots.forEach { slot in
            doc.removeAll(keepingCapacity: true)
            doc.append(UInt8(ascii: "["))
            for label in carried where label.members.contains(slot) {
                if doc.count > 1 { doc.append(UInt8(ascii: ",")) }
                doc.append(contentsOf: label.json)
            }
            guard doc.count > 1 else { return emit(slot, nil) }
            doc.append(UInt8(ascii: "]"))
            emit(slot, doc)
        }
    }

    public func definition(_ key: String, in book: Book) -> [UInt8]? {
        guard let entry = (book.part(Index.self) ?? Index()).labels[key] else { return nil }
        var doc: [UInt8] = []
        JSONValue.object(["name": .string(entry.name), "last_added_at": entry.lastAddedAt.map(JSONValue.double) ?? .null]).write(into: &doc)
        return doc
    }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        let replace = try checked(doc, "labels")
        let add = try checked(doc, "add_labels")
        let remove = try checked(doc, "remove_labels")
        guard replace != nil || add != nil || remove != nil else { return nil }
        return Change(replace: replace, add: add ?? [], remove: remove ?? [])
    }

    /// Takes the index out of the book once for the whole batch, and marks each added
    /// label's definition (its `last_added_at`) once per batch rather than once per contact.
    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
            var added: Set<String> = []
            for write in batch {
                apply(write.change, slot: write.slot, isNew: write.isNew, index: &index, added: &added, context: &context)
            }
            for key in added { context.changedDefinition(key, in: name) }
        }
    }

    /// A new contact carries no label yet, so its write skips looking through every label.
    private func apply(
        _ change: (any ContactChange)?, slot: Int, isNew: Bool, index: inout Index, added: inout Set<String>, context: inout WriteContext
    ) {
        guard let change = change as? Change else { return }
        var wanted: [String: String] = [:]  // key → display name
        if let replace = change.replace {
            for label in replace { wanted[label.lowercased()] = label }
        } else if !isNew {
            for (key, entry) in index.labels where entry.members.contains(slot) { wanted[key] = entry.name }
        }
        for label in change.add { wanted[label.lowercased()] = wanted[label.lowercased()] ?? label }
        for label in change.remove { wanted.removeValue(forKey: label.lowercased()) }

        // Keys are collected first: mutating a bitmap while iterating the dictionary that
        // holds it would copy the bitmap on every removal.
        let dropped = isNew ? [] : index.labels.compactMap { key, entry in entry.members.contains(slot) && wanted[key] == nil ? key : nil }
        for key in dropped { index.labels[key]?.members.remove(slot) }
        var gained = false
        for (key, display) in wanted where Self.gain(&index.labels[key, default: Entry(name: display)], slot: slot, at: context.now) {
            added.insert(key)
            gained = true
        }
        guard gained || !dropped.isEmpty else { return }
        context.changed(slot, in: name)
    }

    /// Adds `slot` to the label in one access to the index (each lookup hashes the key);
    /// whether it was not there yet.
    private static func gain(_ entry: inout Entry, slot: Int, at now: Double) -> Bool {
        guard !entry.members.contains(slot) else { return false }
        entry.members.insert(slot)
        entry.lastAddedAt = now
        return true
    }

    public func remove(slot: Int, context: inout WriteContext) throws {
        var index = context.book.takePart(Index.self) ?? Index()
        let carried = index.labels.compactMap { key, entry in entry.members.contains(slot) ? key : nil }
        for key in carried { index.labels[key]!.members.remove(slot) }
        context.book.setPart(index)
    }

    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
        let op = try filter.op(of: name, allowed: ["contains", "contains_any", "not_contains"])
        let labels = op == "contains_any" ? try filter.nonEmptyStrings() : try filter.stringOrList()
        for (i, label) in labels.enumerated() where label.trimmingWhitespace.isEmpty {
            throw .invalidParams(path: labels.count == 1 && filter.object["value"]?.stringValue != nil
                ? filter.path.member("value") : filter.path.member("value").index(i), "a label cannot be empty")
        }
        let mode: LabelPredicate.Mode = op == "contains" ? .all : op == "contains_any" ? .any : .none
        return LabelPredicate(dimension: name, keys: labels.map { $0.trimmingWhitespace.lowercased() }, mode: mode)
    }

    public func render(slot: Int, book: Book) -> [String: JSONValue] {
        let index = book.part(Index.self) ?? Index()
        return ["labels": .array(index.labels(of: slot).map { .string($0) })]
    }

    public var columnNames: [String] { ["labels"] }

    public func column(_ column: String, book: Book) -> ColumnReader? {
        guard column == "labels" else { return nil }
        let index = book.part(Index.self) ?? Index()
        let entries = index.labels.values.sorted { $0.name.lowercased() < $1.name.lowercased() }
        return ColumnReader { slot in .array(entries.filter { $0.members.contains(slot) }.map { .string($0.name) }) }
    }
}

extension String {
    var trimmingWhitespace: String {
        // Nearly every label starts and ends with a printable ASCII character: nothing to trim,
        // and no Unicode property lookups (they were a few percent of an ingest profile).
        if let first = utf8.first, let last = utf8.last, (0x21..<0x80).contains(first), (0x21..<0x80).contains(last) { return self }
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}

extension LabelDimension.Index: ResidentSize {
    /// The label table: keys, display names and a member bitmap per label (8 KiB per 65,536
    /// slots it spans, however few members).
    public var residentBytes: Int { ResidentBytes.dictionary(labels) }
}

extension LabelDimension.Entry: ResidentSize {
    public var residentBytes: Int { ResidentBytes.string(name) + members.residentBytes }
}
