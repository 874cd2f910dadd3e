import WireJSON

/// A filter dimension: one slice of what a contact is, and the filters over it.
///
/// A provider owns the keys it accepts in a contact document, its index inside the `Book`,
/// the documents it stores (see ``StoredParts``: it never sees a database, so it runs the
/// same on SQLite and PostgreSQL), the compilation of its filters, and optionally its own
/// RPC methods. The five built-in dimensions live under `Plugins/`, each a module
/// depending on SegmentCore only; a new dimension is one more conformance and one
/// registration line.
///
/// The whole contract, a dimension that flags VIP contacts (`{"vip": true}` in a contact
/// document; filter `{"dimension": "vip", "op": "is", "value": true}`):
///
/// ```swift
/// struct VIPDimension: DimensionProvider {
///     /// Its part of the book, found by its type.
///     struct Index: BookPart { var vip = ContactSet() }
///     struct Change: ContactChange { let vip: Bool }
///
///     let name = "vip"
///     var descriptor: DimensionDescriptor {
///         DimensionDescriptor(name: name, summary: "VIP flag", operators: [.init("is", value: "boolean", "contacts flagged (true) or not")])
///     }
///     var contactKeys: [String] { ["vip"] }
///
///     // Writing: validate a document off the writer, then apply a batch under it.
///     func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
///         guard doc.has("vip") else { return nil }
///         guard let vip = doc.object["vip"]?.boolValue else { throw .invalidParams(path: doc.path.member("vip"), "vip is true or false") }
///         return Change(vip: vip)
///     }
///     func apply(batch: [ContactWrite], context: inout WriteContext) throws {
///         WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
///             for write in batch {
///                 guard let change = write.change as? Change, index.vip.contains(write.slot) != change.vip else { continue }
///                 if change.vip { index.vip.insert(write.slot) } else { index.vip.remove(write.slot) }
///                 context.changed(write.slot, in: name)   // the core stores its document
///             }
///         }
///     }
///     func remove(slot: Int, context: inout WriteContext) throws {
///         WriteContext.withPart(in: &context, orNew: Index.init) { index, _ in index.vip.remove(slot) }
///     }
///
///     // Storing: one document per contact (bytes of its own encoding), and back.
///     func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
///         let index = book.part(Index.self) ?? Index()
///         slots.forEach { emit($0, index.vip.contains($0) ? [1] : nil) }
///     }
///     func load(_ stored: StoredParts, into book: inout Book) throws {
///         var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
///         stored.replacing?.forEach { index.vip.remove($0) }
///         try stored.forEachDocument { slot, doc in if doc == [1] { index.vip.insert(slot) } }
///         book.setPart(index)
///     }
///
///     // Reading: a filter, and the contact's part of `contacts.get`.
///     func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
///         try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
///         return VIPIs(wanted: filter.object["value"]?.boolValue ?? true)
///     }
///     func render(slot: Int, book: Book) -> [String: JSONValue] {
///         ["vip": .bool(book.part(Index.self)?.vip.contains(slot) ?? false)]
///     }
/// }
///
/// struct VIPIs: ContactPredicate {
///     let wanted: Bool
///     var aspects: Set<String> { ["vip"] }
///     func resolve(in book: Book, at now: Double) -> ContactSet {
///         let vip = book.part(VIPDimension.Index.self)?.vip ?? ContactSet()
///         return wanted ? vip.intersection(book.alive) : book.alive.subtracting(vip)
///     }
///     func matches(slot: Int, in book: Book, at now: Double) -> Bool {
///         (book.part(VIPDimension.Index.self)?.vip.contains(slot) ?? false) == wanted
///     }
/// }
///
/// registry.register(VIPDimension())
/// ```
///
/// Optional: `methods` (RPC methods of its own), `definition(_:in:)` (definition documents,
/// marked with ``WriteContext/changedDefinition(_:in:)``), `column(_:book:)` (export
/// columns), `lint`, `legacy` (tables kept before documents).
public protocol DimensionProvider: Sendable {
    /// The `dimension` value in filters (`"label"`).
    var name: String { get }
    var descriptor: DimensionDescriptor { get }
    /// Keys this provider reads from a contact document (`labels`, `add_labels`, …).
    var contactKeys: [String] { get }
    /// The SQLite tables it kept before documents, converted once (nil for a new dimension).
    var legacy: LegacyStorage? { get }
    /// Whether the dashboard can show its filters; others make a segment `review_needed`.
    var isDashboardDimension: Bool { get }

    /// Builds its index from its stored documents, after the core has loaded every contact's
    /// slot; or, on a partial load (`stored.replacing`), updates the index for those contacts.
    func load(_ stored: StoredParts, into book: inout Book) throws

    /// The current stored document of each slot of `slots` (`nil`: nothing to store, the
    /// contact's row goes): what the core persists after a write that marked them changed.
    func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void)

    /// The current definition document under `key` (`nil`: deleted).
    func definition(_ key: String, in book: Book) -> [UInt8]?

    /// Validates the provider's keys of one contact document (only those present) and
    /// returns the typed change, or `nil` when the document has none of its keys.
    func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)?

    /// Applies one upsert batch's prepared changes, in document order, inside the write
    /// transaction, to its index, marking each contact it changed
    /// (``WriteContext/changed(_:in:)``). Every new contact has a write, with a `nil` change
    /// when the document had none of its keys, so the provider can set defaults. Take the
    /// index out of the book once per batch (``WriteContext/withPart(in:orNew:_:)``), not once
    /// per contact: that round trip was a tenth of an ingest profile.
    func apply(batch: [ContactWrite], context: inout WriteContext) throws

    /// Removes a deleted contact from its index (the core deletes the stored document).
    func remove(slot: Int, context: inout WriteContext) throws

    /// Compiles one filter object (`{"dimension": …, "op": …, …}`) into a predicate, with
    /// errors naming the offending path.
    func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate

    /// The provider's part of `contacts.get`.
    func render(slot: Int, book: Book) -> [String: JSONValue]

    /// Named values for exports (`columns`); `nil` for a column it does not own.
    func column(_ name: String, book: Book) -> ColumnReader?

    /// What `column(_:book:)` answers, for the unknown-column error: its column names, or a
    /// phrase for names the user chose (`custom fields by name`).
    var columnNames: [String] { get }

    /// Extra RPC methods (`labels.list`, `fields.define`, `engagement.record`).
    var methods: [DimensionMethod] { get }

    /// Lint findings about one of its (valid) filters, such as a label nobody carries.
    func lint(_ filter: ParamReader, book: Book, now: Double, settings: LintSettings) -> [LintWarning]
}

extension DimensionProvider {
    public var legacy: LegacyStorage? { nil }
    public func definition(_ key: String, in book: Book) -> [UInt8]? { nil }
    public var isDashboardDimension: Bool { false }
    public var methods: [DimensionMethod] { [] }
    public func remove(slot: Int, context: inout WriteContext) throws {}
    public func column(_ name: String, book: Book) -> ColumnReader? { nil }
    public var columnNames: [String] { [] }
    public func lint(_ filter: ParamReader, book: Book, now: Double, settings: LintSettings) -> [LintWarning] { [] }
}

/// A provider's typed, validated part of one contact document.
public protocol ContactChange: Sendable {}

/// One contact of an upsert batch, as one provider sees it: its slot, whether the contact was
/// just created, and the provider's change (`nil` when the document had none of its keys).
public struct ContactWrite: Sendable {
    public var slot: Int
    public var isNew: Bool
    public var change: (any ContactChange)?

    public init(slot: Int, isNew: Bool, change: (any ContactChange)?) {
        self.slot = slot
        self.isNew = isNew
        self.change = change
    }
}

/// Reads one export column for a slot.
public struct ColumnReader: Sendable {
    public var read: @Sendable (Int) -> JSONValue
    public init(_ read: @escaping @Sendable (Int) -> JSONValue) { self.read = read }
}

/// What a provider gets inside a write transaction.
public struct WriteContext {
    /// The book being written: a private copy until the transaction commits.
    public var book: Book
    /// SQL on the open transaction: the core's alone (`package`), never a provider's.
    package let sql: any SQLExecutor
    /// The write's time (from the engine's clock).
    public let now: Double
    public let time: ISOTime
    /// Slots changed by this write, for triggers.
    public var touched = ContactSet()
    /// Per provider, the contacts whose stored documents this write changed.
    package private(set) var changedDocuments: [String: ContactSet] = [:]
    private var recentProvider: String?
    private var recentSlots = ContactSet()
    /// Per provider, the definition keys this write changed.
    package private(set) var changedDefinitions: [String: Set<String>] = [:]
    /// Every contact whose documents this write stored (what a fleet node re-reads).
    package var storedContacts = ContactSet()
    /// Whether this write pruned the event log (a fleet node re-reads its extent).
    package var prunedEvents = false
    /// Whether this write stored a provider's definition (a fleet node re-reads them).
    package var storedDefinitions = false
    /// Segments whose rule this write rewrote (`rewrite(segment:)`), in the order rewritten.
    public internal(set) var rewrittenSegments: [Int64] = []

    package init(book: Book, sql: any SQLExecutor, now: Double, time: ISOTime) {
        self.book = book
        self.sql = sql
        self.now = now
        self.time = time
    }
}

extension WriteContext {
    /// Marks `slot` changed by provider `provider`: the core stores its document after the
    /// write's body, and triggers re-check the contact.
    public mutating func changed(_ slot: Int, in provider: String) {
        touched.insert(slot)
        // One provider marks a batch's contacts in a row: they gather in one set, folded into
        // the dictionary when another provider marks (no hashing of the name per contact).
        if provider != recentProvider {
            foldRecent()
            recentProvider = provider
        }
        recentSlots.insert(slot)
    }

    private mutating func foldRecent() {
        if let provider = recentProvider, !recentSlots.isEmpty {
            changedDocuments[provider, default: ContactSet()].formUnion(recentSlots)
        }
        recentProvider = nil
        recentSlots = ContactSet()
    }

    /// Marks `slots` as needing their documents stored again, without a trigger re-check
    /// (a correction that renames what they hold but changes no membership).
    public mutating func restore(_ slots: ContactSet, in provider: String) {
        changedDocuments[provider, default: ContactSet()].formUnion(slots)
    }

    /// Marks definition `key` of `provider` changed: the core stores its document again.
    public mutating func changedDefinition(_ key: String, in provider: String) {
        changedDefinitions[provider, default: []].insert(key)
    }

    /// Takes the changes marked so far (the core, when it writes them).
    package mutating func takeChanges() -> (documents: [String: ContactSet], definitions: [String: Set<String>]) {
        foldRecent()
        defer {
            changedDocuments = [:]
            changedDefinitions = [:]
        }
        return (changedDocuments, changedDefinitions)
    }

    /// Runs `body` with the provider's part taken out of the book (or `make()` when there is
    /// none yet) and puts it back after: a part mutated while the book still holds it is copied
    /// on every write. Providers call it once per batch in `apply(batch:)`.
    public static func withPart<Part: BookPart>(
        in context: inout WriteContext, orNew make: () -> Part, _ body: (inout Part, inout WriteContext) throws -> Void
    ) rethrows {
        var part = context.book.takePart(Part.self) ?? make()
        defer { context.book.setPart(part) }
        try body(&part, &context)
    }
}

/// An RPC method a provider adds (`engagement.record`). The engine runs `write` methods on
/// its single writer inside one transaction and `read` methods on a snapshot.
public struct DimensionMethod: Sendable {
    public enum Body: Sendable {
        case read(@Sendable (_ params: ParamReader, _ book: Book) throws -> JSONValue)
        case write(@Sendable (_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue)
    }

    public var name: String
    public var summary: String
    public var paramsSchema: JSONValue
    public var resultSchema: JSONValue
    public var body: Body

    public init(name: String, summary: String, paramsSchema: JSONValue, resultSchema: JSONValue, body: Body) {
        self.name = name
        self.summary = summary
        self.paramsSchema = paramsSchema
        self.resultSchema = resultSchema
        self.body = body
    }
}
