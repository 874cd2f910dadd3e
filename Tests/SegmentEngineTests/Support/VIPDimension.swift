import SegmentCore
import WireJSON

// The doc comment's example of `DimensionProvider`, word for word (DimensionProviderDocTests
// proves it compiles and works: keep the two the same).

struct VIPDimension: DimensionProvider {
    /// Its part of the book, found by its type.
    struct Index: BookPart { var vip = ContactSet() }
    struct Change: ContactChange { let vip: Bool }

    let name = "vip"
    var descriptor: DimensionDescriptor {
        DimensionDescriptor(name: name, summary: "VIP flag", operators: [.init("is", value: "boolean", "contacts flagged (true) or not")])
    }
    var contactKeys: [String] { ["vip"] }

    // Writing: validate a document off the writer, then apply a batch under it.
    func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        guard doc.has("vip") else { return nil }
        guard let vip = doc.object["vip"]?.boolValue else { throw .invalidParams(path: doc.path.member("vip"), "vip is true or false") }
        return Change(vip: vip)
    }
    func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
            for write in batch {
                guard let change = write.change as? Change, index.vip.contains(write.slot) != change.vip else { continue }
                if change.vip { index.vip.insert(write.slot) } else { index.vip.remove(write.slot) }
                context.changed(write.slot, in: name)   // the core stores its document
            }
        }
    }
    func remove(slot: Int, context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, _ in index.vip.remove(slot) }
    }

    // Storing: one document per contact (bytes of its own encoding), and back.
    func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let index = book.part(Index.self) ?? Index()
        slots.forEach { emit($0, index.vip.contains($0) ? [1] : nil) }
    }
    func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
        stored.replacing?.forEach { index.vip.remove($0) }
        try stored.forEachDocument { slot, doc in if doc == [1] { index.vip.insert(slot) } }
        book.setPart(index)
    }

    // Reading: a filter, and the contact's part of `contacts.get`.
    func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
        return VIPIs(wanted: filter.object["value"]?.boolValue ?? true)
    }
    func render(slot: Int, book: Book) -> [String: JSONValue] {
        ["vip": .bool(book.part(Index.self)?.vip.contains(slot) ?? false)]
    }
}

struct VIPIs: ContactPredicate {
    let wanted: Bool
    var aspects: Set<String> { ["vip"] }
    func resolve(in book: Book, at now: Double) -> ContactSet {
        let vip = book.part(VIPDimension.Index.self)?.vip ?? ContactSet()
        return wanted ? vip.intersection(book.alive) : book.alive.subtracting(vip)
    }
    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        (book.part(VIPDimension.Index.self)?.vip.contains(slot) ?? false) == wanted
    }
}

