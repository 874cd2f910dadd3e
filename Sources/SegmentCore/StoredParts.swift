/// What a provider persists, and how the core hands it back: the storage interface.
///
/// A provider never sees a database. It stores two kinds of documents, opaque bytes in an
/// encoding it chooses:
/// - **one document per contact** (its whole part of that contact: a status code, a label
///   list, a field document), or none;
/// - **definition documents** under keys of its own (a label's display name, a field's type).
///
/// Inside a write it says which contacts and definitions it changed
/// (``WriteContext/changed(_:in:)``, ``WriteContext/changedDefinition(_:in:)``); after the
/// write's body, the core asks it for the current documents of exactly those
/// (``DimensionProvider/documents(for:in:_:)``, ``DimensionProvider/definition(_:in:)``) and
/// writes them in the same transaction, to SQLite or PostgreSQL. Loading is the inverse:
/// ``DimensionProvider/load(_:into:)`` gets every stored document. A node of a fleet that
/// learns that other nodes changed some contacts gets a partial load: those contacts'
/// documents only, which replace what it had for them.
///
/// ```swift
/// func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
///     let index = book.part(StatusIndex.self)
///     slots.forEach { slot in emit(slot, index.map { [$0.codes.code(at: slot)] }) }
/// }
/// ```
public struct StoredParts {
    /// `nil`: a full load (the provider starts from an empty index). Otherwise the contacts
    /// whose documents are given anew: the provider forgets what it had for each of them
    /// before reading `forEachDocument`, which yields only those that still have one.
    public let replacing: ContactSet?
    /// Every definition document of the provider, by key (on a partial load too: they are
    /// few, and a change to one is read whole).
    public let definitions: [String: [UInt8]]
    private let documents: ((Int, [UInt8]) throws -> Void) throws -> Void

    public init(replacing: ContactSet?, definitions: [String: [UInt8]], documents: @escaping ((Int, [UInt8]) throws -> Void) throws -> Void) {
        self.replacing = replacing
        self.definitions = definitions
        self.documents = documents
    }

    /// Calls `body` with each stored contact document (slot, bytes), in slot order.
    public func forEachDocument(_ body: (Int, [UInt8]) throws -> Void) throws {
        try withoutActuallyEscaping(body) { body in try documents(body) }
    }
}

/// A provider's storage from before documents: named SQLite migrations that built its old
/// tables, and a reader that loads them into the book. Opening an SQLite file that has them
/// runs the migrations it lacks, reads the old tables with `load`, writes every contact's
/// document and each definition, and drops the tables (`dropTables`), all in one named
/// migration. Frozen history: a PostgreSQL store never runs it, and a new dimension has none.
public struct LegacyStorage: Sendable {
    public var migrations: [StoreMigration]
    public var load: @Sendable (any SQLExecutor, inout Book) throws -> Void
    /// The definition keys the old tables held (read after `load`).
    public var definitionKeys: @Sendable (Book) -> [String]
    public var dropTables: [String]

    public init(
        migrations: [StoreMigration], dropTables: [String], definitionKeys: @escaping @Sendable (Book) -> [String] = { _ in [] },
        load: @escaping @Sendable (any SQLExecutor, inout Book) throws -> Void
    ) {
        self.migrations = migrations
        self.dropTables = dropTables
        self.definitionKeys = definitionKeys
        self.load = load
    }
}

/// Little helpers for compact binary documents: fixed-width little-endian numbers.
public struct DocumentWriter {
    public private(set) var bytes: [UInt8] = []
    public init(capacity: Int = 16) { bytes.reserveCapacity(capacity) }

    public mutating func byte(_ b: UInt8) { bytes.append(b) }

    public mutating func double(_ x: Double) {
        let bits = x.bitPattern
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
    }

    /// `nil` as one 0 byte; a value as 1 and its 8 bytes.
    public mutating func optionalDouble(_ x: Double?) {
        guard let x else { return byte(0) }
        byte(1)
        double(x)
    }
}

public struct DocumentReader {
    private let bytes: [UInt8]
    private var offset = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset >= bytes.count }

    public mutating func byte() throws -> UInt8 {
        guard offset < bytes.count else { throw SegmentError(.internal, "stored document ends early (\(bytes.count) bytes)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func double() throws -> Double {
        guard offset + 8 <= bytes.count else { throw SegmentError(.internal, "stored document ends early (\(bytes.count) bytes)") }
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return Double(bitPattern: bits)
    }

    public mutating func optionalDouble() throws -> Double? {
        try byte() == 0 ? nil : try double()
    }
}
