import SegmentCore
import SegmentStore
import WireJSON

/// The outcome of `contacts.upsert`.
public struct UpsertResult: Sendable, Equatable {
    public var created = 0
    public var updated = 0
    /// Items that were refused, by index in the batch, with what is wrong.
    public var failed: [(index: Int, error: SegmentError)] = []

    public static func == (a: UpsertResult, b: UpsertResult) -> Bool {
        a.created == b.created && a.updated == b.updated && a.failed.map(\.index) == b.failed.map(\.index)
    }

    public var json: JSONValue {
        [
            "created": .int(Int64(created)), "updated": .int(Int64(updated)),
            "failed": .array(failed.map { ["index": .int(Int64($0.index)), "error": .string($0.error.description)] }),
        ]
    }
}

/// One validated contact document, ready to write.
struct PreparedContact: Sendable {
    let email: String
    /// The lower-cased address, the contact's identity (computed off the writer).
    let key: String
    let changes: [(provider: Int, change: any ContactChange)]
}

extension Engine {
    /// Creates or updates contacts by email. Each invalid item fails alone with its index,
    /// unless `atomic`, when any invalid item refuses the whole batch and nothing is written.
    public func upsert(contacts: [JSONValue], atomic: Bool = false) async throws -> UpsertResult {
        guard contacts.count <= configuration.maxBatch else {
            throw SegmentError(.tooLarge, "at most \(configuration.maxBatch) contacts per call, got \(contacts.count)", path: "contacts")
        }
        // Validated against this node's state, off the writer. A fleet node validates again
        // under the book's lock when other nodes' changes were applied since (a field they
        // defined or deleted a moment ago): no round trip more when none were. (This node's
        // own writes in between are not checked again, as with one node: a field deleted by
        // a call running at the same moment may drop a value, as if deleted just after.)
        var book = snapshot
        var (prepared, failed) = prepareAll(contacts, book: book)
        if !failed.isEmpty, configuration.fleet != nil {
            try await catchUpBeforeValidating()
            if snapshot.changeSequence != book.changeSequence {
                book = snapshot
                (prepared, failed) = prepareAll(contacts, book: book)
            }
        }
        var result = UpsertResult()
        result.failed = failed
        try Self.refuseAtomic(atomic, failed)
        guard !prepared.isEmpty else { return result }
        let validItems = prepared, foreign = book.foreignChanges
        let providers = registry.providers
        let written: (created: Int, updated: Int, refused: [(index: Int, error: SegmentError)]?)
        do {
            written = try await write(cause: "contacts.upsert") { context in
                var items = validItems, refused: [(index: Int, error: SegmentError)]?
                if context.book.foreignChanges != foreign {
                    (items, refused) = self.prepareAll(contacts, book: context.book)
                    try Self.refuseAtomic(atomic, refused!)
                    // Nothing left to write: no version, no change record.
                    if items.isEmpty { throw NothingToWrite(failed: refused!) }
                }
                let (created, updated) = try Self.writeContacts(items, providers: providers, context: &context)
                return (created, updated, refused)
            }
        } catch let nothing as NothingToWrite {
            result.failed = nothing.failed
            return result
        }
        let (created, updated, refused) = written
        if let refused { result.failed = refused }
        result.created = created
        result.updated = updated
        metrics.upserted(created + updated)
        return result
    }

    /// Writes validated contacts: returns how many were created and updated.
    static func writeContacts(_ items: [PreparedContact], providers: [any DimensionProvider], context: inout WriteContext) throws -> (Int, Int) {
        // New contacts first, in document order, a hundred rows per statement (one
        // statement per contact was a third of the core's time on ingest). A repeated
        // email in one batch is created by its first occurrence and updated by the others.
        var created = 0, updated = 0
        var rows = RowBatch("INSERT INTO contact(email, email_key, created_at)", width: 3)
        var waiting: [Int] = []  // items whose rows wait in `rows`
        var slots = [Int](repeating: -1, count: items.count)
        var isNew = [Bool](repeating: false, count: items.count)
        var newKeys: Set<String> = []
        func place(_ ids: ClosedRange<Int64>?) {
            guard let ids else { return }
            for (i, id) in zip(waiting, ids) {
                slots[i] = Int(id)
                context.book.addContact(slot: slots[i], email: items[i].email, key: items[i].key, createdAt: context.now)
                context.touched.insert(slots[i])
            }
            waiting.removeAll(keepingCapacity: true)
        }
        for (i, item) in items.enumerated() {
            if let slot = context.book.slot(ofKey: item.key) {
                slots[i] = slot
                continue
            }
            guard newKeys.insert(item.key).inserted else { continue }  // a repeat: found once created
            isNew[i] = true
            waiting.append(i)
            rows.append(.text(item.email))
            rows.append(.text(item.key))
            rows.append(.real(context.now))
            place(try rows.endRow(context.sql))
        }
        place(try rows.flush(context.sql))
        // Then each provider applies its part of the whole batch, in document order; a new
        // contact gets a write from every provider (with or without a change), so each
        // can set its defaults.
        var writes = Array(repeating: [ContactWrite](), count: providers.count)
        for p in providers.indices { writes[p].reserveCapacity(items.count) }
        var changes = [(any ContactChange)?](repeating: nil, count: providers.count)
        for (i, item) in items.enumerated() {
            let slot = slots[i] >= 0 ? slots[i] : context.book.slot(ofKey: item.key)!
            if isNew[i] {
                for p in changes.indices { changes[p] = nil }
                for (p, change) in item.changes { changes[p] = change }
                for p in providers.indices { writes[p].append(ContactWrite(slot: slot, isNew: true, change: changes[p])) }
                created += 1
            } else {
                for (p, change) in item.changes { writes[p].append(ContactWrite(slot: slot, isNew: false, change: change)) }
                updated += 1
            }
        }
        for (p, provider) in providers.enumerated() where !writes[p].isEmpty {
            try provider.apply(batch: writes[p], context: &context)
        }
        return (created, updated)
    }

    /// The batch's valid items, and the others with what is wrong (by index).
    func prepareAll(_ contacts: [JSONValue], book: Book) -> ([PreparedContact], [(index: Int, error: SegmentError)]) {
        var prepared: [PreparedContact] = []
        var failed: [(index: Int, error: SegmentError)] = []
        prepared.reserveCapacity(contacts.count)
        for (i, item) in contacts.enumerated() {
            do {
                prepared.append(try prepare(item, path: "contacts".index(i), book: book))
            } catch {
                failed.append((i, error))
            }
        }
        return (prepared, failed)
    }

    /// An atomic batch with an invalid item is refused whole.
    static func refuseAtomic(_ atomic: Bool, _ failed: [(index: Int, error: SegmentError)]) throws(SegmentError) {
        guard atomic, let first = failed.first else { return }
        throw SegmentError(
            .invalidParams, "atomic batch refused, nothing written: \(failed.count) invalid item(s); first: \(first.error.message)",
            path: first.error.path)
    }

    func prepare(_ item: JSONValue, path: String, book: Book) throws(SegmentError) -> PreparedContact {
        let doc = try ParamReader(item, path: path)
        try doc.rejectUnknownKeys(allowed: registry.contactKeys)
        let email = try doc.string("email").trimmingSpaces
        try Self.checkEmail(email, path: path.member("email"))
        var changes: [(Int, any ContactChange)] = []
        for (p, provider) in registry.providers.enumerated() {
            if let change = try provider.prepare(doc, book: book, time: time) { changes.append((p, change)) }
        }
        return PreparedContact(email: email, key: email.lowercased(), changes: changes)
    }

    /// A deliberately plain check: one `@`, a non-empty local part, a dotted domain, no
    /// spaces or control characters, at most 254 characters.
    static func checkEmail(_ email: String, path: String) throws(SegmentError) {
        guard isPlainAddress(email) else { throw .invalidParams(path: path, "not an email address: \"\(email)\"") }
    }

    /// One pass over the UTF-8 bytes ('@' and '.' are ASCII, so no character is split):
    /// splitting into substrings and Unicode property lookups were several percent of ingest.
    /// Non-ASCII addresses take the slower whitespace and control check.
    static func isPlainAddress(_ email: String) -> Bool {
        var text = email
        return text.withUTF8 { bytes in
            guard bytes.count <= 254 else { return false }
            var at = -1, lastDot = -1, ascii = true
            for (i, byte) in bytes.enumerated() {
                switch byte {
                case UInt8(ascii: "@"):
                    guard at < 0 else { return false }  // a second '@'
                    at = i
                case UInt8(ascii: "."): if at >= 0 { lastDot = i }
                case 0...0x20, 0x7F: return false  // space or ASCII control
                case 0x80...: ascii = false
                default: break
                }
            }
            // A non-empty local part; a domain with a dot, not starting or ending with one.
            guard at > 0, lastDot > at, bytes[at + 1] != UInt8(ascii: "."), bytes[bytes.count - 1] != UInt8(ascii: ".") else { return false }
            return ascii || !email.unicodeScalars.contains { $0.properties.isWhitespace || $0.properties.generalCategory == .control }
        }
    }

    /// The whole contact, every provider's part, or `nil` if there is none with that email.
    public func contact(email: String, in book: Book? = nil) -> JSONValue? {
        let book = book ?? snapshot
        guard let slot = book.slot(of: email) else { return nil }
        return render(slot: slot, book: book)
    }

    func render(slot: Int, book: Book) -> JSONValue {
        var out: [String: JSONValue] = [
            "email": .string(book.emails[slot]),
            "created_at": .string(ISOTime.format(book.createdAt[slot])),
            "suppressed": .bool(book.suppressed.contains(slot)),
        ]
        for provider in registry.providers {
            out.merge(provider.render(slot: slot, book: book)) { _, new in new }
        }
        return .object(out)
    }

    /// Deletes contacts by email (unknown emails are skipped); returns how many were deleted.
    public func delete(emails: [String]) async throws -> Int {
        guard emails.count <= configuration.maxBatch else {
            throw SegmentError(.tooLarge, "at most \(configuration.maxBatch) emails per call, got \(emails.count)", path: "emails")
        }
        let providers = registry.providers
        return try await write(cause: "contacts.delete") { context in
            var deleted: [Int] = []
            for email in emails {
                guard let slot = context.book.slot(of: email) else { continue }
                for provider in providers { try provider.remove(slot: slot, context: &context) }
                try context.sql.execute("DELETE FROM contact WHERE id = ?", [.integer(Int64(slot))])
                context.book.removeContact(slot: slot)
                context.touched.insert(slot)
                deleted.append(slot)
            }
            try PartStorage.deleteContacts(deleted, providers: providers, sql: context.sql)
            return deleted.count
        }
    }

    /// Contacts in total and by the audience provider's standing (status).
    public func countContacts() -> (total: Int, byStatus: [String: Int]) {
        let book = snapshot
        return (book.contactCount, registry.audience?.breakdown(in: book) ?? [:])
    }
}

extension String {
    var trimmingSpaces: String {
        if let first = utf8.first, let last = utf8.last, first != 0x20, first != 0x09, last != 0x20, last != 0x09 { return self }
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}

/// A batch whose every item was refused when validated again under the lock: the write
/// rolls back and the call answers with the failures alone.
struct NothingToWrite: Error {
    let failed: [(index: Int, error: SegmentError)]
}
