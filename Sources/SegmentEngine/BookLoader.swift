import Dispatch
import SegmentCore
import SegmentStore
import Synchronization
import WireJSON

/// Rebuilds a `Book` from SQLite at start: the core's tables, then each provider's.
struct BookLoader {
    let registry: DimensionRegistry
    let time: ISOTime

    /// Loads the core (suppressions, contacts, segments), then every provider's index and the
    /// email index in parallel, each provider on its own read connection and its own copy of
    /// the core book, then the triggers (whose rules compile against the providers' indexes). At start-up nothing
    /// writes, so the separate read transactions see one state.
    func load(_ store: any BookStore) throws -> Book {
        var book = try store.readNow { sql in try loadCore(sql) }
        let core = book
        let providers = registry.providers
        let loaded = Mutex([Result<Book, any Error>?](repeating: nil, count: providers.count))
        let emails = Mutex(HashIndex())
        // One more task builds the email index, which nothing loaded here needs.
        DispatchQueue.concurrentPerform(iterations: providers.count + 1) { p in
            guard p < providers.count else {
                let index = core.buildEmailIndex()
                emails.withLock { $0 = index }
                return
            }
            let result = Result { try store.readNow { sql in
                var copy = core
                try PartStorage.load(providers[p], into: &copy, sql: sql)
                return copy
            } }
            loaded.withLock { $0[p] = result }
        }
        for result in loaded.withLock({ $0 }) { book.adoptParts(of: try result!.get()) }
        book.install(emailIndex: emails.withLock { $0 })
        try store.readNow { sql in try loadTriggers(sql, into: &book) }
        return book
    }

    /// The whole book on one executor, one provider after another (a fleet node that fell
    /// behind the change records it could apply, inside its catch-up transaction).
    func load(_ sql: any SQLExecutor) throws -> Book {
        var book = try loadCore(sql)
        for provider in registry.providers { try PartStorage.load(provider, into: &book, sql: sql) }
        book.install(emailIndex: book.buildEmailIndex())
        try loadTriggers(sql, into: &book)
        return book
    }

    private func loadCore(_ sql: any SQLExecutor) throws -> Book {
        var book = Book()
        try sql.forEachRow("SELECT value FROM meta WHERE key = 'version'", []) { row in
            book.bumpVersion(to: row[0].int64 ?? 0)
        }
        book.setChangeSequence(try Engine.changeSequence(sql))
        try sql.forEachRow("SELECT email FROM suppression", []) { row in
            if let email = row[0].string { book.setSuppressed(email, true) }
        }
        try PartStorage.scan("SELECT id, email, created_at FROM contact", key: "id", sql: sql) { row in
            guard let id = row[0].int64, let email = row[1].string else { return }
            book.loadContact(slot: Int(id), email: email, createdAt: row[2].double ?? 0)
        }
        for segment in try loadSegments(sql) { book.setSegment(segment) }
        return book
    }

    func loadSegments(_ sql: any SQLExecutor) throws -> [Segment] {
        var segments: [Segment] = []
        try sql.forEachRow(
            "SELECT id, name, description, filters, review_needed, created_at, updated_at, last_used_at FROM segment", []
        ) { row in
            guard let id = row[0].int64, let name = row[1].string, let text = row[3].string else { return }
            let filters = (try? JSONParser.parse(text)) ?? .array([])
            segments.append(Segment(
                id: id, name: name, description: row[2].string ?? "", filters: filters,
                reviewNeeded: row[4].int64 == 1, createdAt: row[5].double ?? 0, updatedAt: row[6].double ?? 0,
                lastUsedAt: row[7].double))
        }
        return segments
    }

    /// Triggers come back with their persisted baselines, so a restart fires nothing.
    func loadTriggers(_ sql: any SQLExecutor, into book: inout Book) throws {
        var members: [Int64: ContactSet] = [:]
        try sql.forEachRow("SELECT trigger_id, chunk, bits FROM trigger_baseline", []) { row in
            guard let id = row[0].int64, let chunk = row[1].int64.map(Int.init), let bits = row[2].bytes else { return }
            members[id, default: ContactSet(capacity: book.slotCount)].setChunk(chunk, bytes: bits)
        }
        try sql.forEachRow("SELECT id, segment_id, on_enter, on_exit, created_at FROM trigger", []) { row in
            guard let id = row[0].int64, let segmentID = row[1].int64, let segment = book.segments[segmentID],
                let rule = try? registry.compile(filters: segment.filters, book: book, time: time)
            else { return }
            book.triggers[id] = Trigger(
                id: id, segmentID: segmentID, onEnter: row[2].int64 == 1, onExit: row[3].int64 == 1,
                createdAt: row[4].double ?? 0, rule: rule, members: members[id] ?? ContactSet())
        }
    }
}
