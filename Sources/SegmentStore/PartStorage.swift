import SegmentCore

/// Where providers' documents live: one table per provider, `part_NAME(contact_id, doc)`,
/// and one table of definition documents, `part_definition(provider, key, doc)`.
///
/// The core writes them; a provider only hands over bytes (see ``StoredParts``). The SQL here
/// is the small subset both SQLite and PostgreSQL run as written (`?` placeholders are
/// numbered for PostgreSQL by its executor): `INSERT … ON CONFLICT … DO UPDATE`, `DELETE`,
/// `SELECT … WHERE … IN`.
public enum PartStorage {
    /// The table of provider `name` (a registered name is a lower-case identifier).
    public static func table(_ name: String) -> String { "part_" + name }

    /// The SQLite migrations: the core's, each provider's legacy tables, then documents.
    public static func sqliteMigrations(for providers: [any DimensionProvider]) -> [StoreMigration] {
        var list = CoreSchema.migrations + providers.flatMap { $0.legacy?.migrations ?? [] }
        list.append(StoreMigration("parts.v1", sql: """
            CREATE TABLE part_definition (provider TEXT NOT NULL, key TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (provider, key)) WITHOUT ROWID;
            """))
        for provider in providers {
            let name = provider.name, legacy = provider.legacy
            list.append(StoreMigration("parts.\(name).v1", sql: "CREATE TABLE \(table(name)) (contact_id INTEGER PRIMARY KEY, doc BLOB NOT NULL);") { sql in
                guard let legacy else { return }
                try convert(provider, legacy: legacy, sql: sql)
            })
        }
        return list
    }

    /// Reads a provider's old tables into a scratch book and stores every document and
    /// definition of it, then drops the old tables.
    static func convert(_ provider: any DimensionProvider, legacy: LegacyStorage, sql: any SQLExecutor) throws {
        var book = Book()
        try sql.forEachRow("SELECT id, email, created_at FROM contact ORDER BY id", []) { row in
            guard let id = row[0].int64, let email = row[1].string else { return }
            book.loadContact(slot: Int(id), email: email, createdAt: row[2].double ?? 0)
        }
        try legacy.load(sql, &book)
        try write(provider, slots: book.alive, definitions: Set(legacy.definitionKeys(book)), book: book, sql: sql)
        for table in legacy.dropTables { try sql.execute("DROP TABLE \(table)", []) }
    }

    /// Stores provider `provider`'s current documents of `slots` and definitions `keys`.
    public static func write(_ provider: any DimensionProvider, slots: ContactSet, definitions keys: Set<String>, book: Book, sql: any SQLExecutor) throws {
        let name = provider.name
        var rows = RowBatch("INSERT INTO \(table(name))(contact_id, doc)", width: 2, suffix: " ON CONFLICT (contact_id) DO UPDATE SET doc = excluded.doc")
        var gone: [SQLValue] = []
        var failure: (any Error)?
        provider.documents(for: slots, in: book) { slot, doc in
            guard failure == nil else { return }
            do {
                if let doc {
                    rows.append(.integer(Int64(slot)))
                    rows.append(.blob(doc))
                    try rows.endRow(sql)
                } else {
                    gone.append(.integer(Int64(slot)))
                }
            } catch { failure = error }
        }
        if let failure { throw failure }
        try rows.flush(sql)
        try deleteDocuments(of: gone, table: table(name), sql: sql)
        for key in keys.sorted() {
            if let doc = provider.definition(key, in: book) {
                try sql.execute(
                    "INSERT INTO part_definition(provider, key, doc) VALUES (?, ?, ?) ON CONFLICT (provider, key) DO UPDATE SET doc = excluded.doc",
                    [.text(name), .text(key), .blob(doc)])
            } else {
                try sql.execute("DELETE FROM part_definition WHERE provider = ? AND key = ?", [.text(name), .text(key)])
            }
        }
    }

    /// Deletes the documents of deleted contacts, every provider's.
    public static func deleteContacts(_ slots: [Int], providers: [any DimensionProvider], sql: any SQLExecutor) throws {
        let ids = slots.map { SQLValue.integer(Int64($0)) }
        for provider in providers { try deleteDocuments(of: ids, table: table(provider.name), sql: sql) }
    }

    private static func deleteDocuments(of ids: [SQLValue], table: String, sql: any SQLExecutor) throws {
        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(start + RowBatch.rowsPerStatement, ids.count)])
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            try sql.execute("DELETE FROM \(table) WHERE contact_id IN (\(marks))", chunk)
            start += chunk.count
        }
    }

    /// A full load of provider `provider` into `book`.
    public static func load(_ provider: any DimensionProvider, into book: inout Book, sql: any SQLExecutor) throws {
        let stored = StoredParts(replacing: nil, definitions: try definitions(of: provider.name, sql: sql)) { body in
            try scan("SELECT contact_id, doc FROM \(table(provider.name))", key: "contact_id", sql: sql) { row in
                guard let slot = row[0].int64, let doc = row[1].bytes else { return }
                try body(Int(slot), doc)
            }
        }
        try provider.load(stored, into: &book)
    }

    /// A partial load: the current documents of `slots` only (a fleet node applying changes
    /// other nodes made).
    public static func reload(_ provider: any DimensionProvider, slots: ContactSet, into book: inout Book, sql: any SQLExecutor) throws {
        var ids: [SQLValue] = []
        slots.forEach { ids.append(.integer(Int64($0))) }
        let table = table(provider.name)
        let stored = StoredParts(replacing: slots, definitions: try definitions(of: provider.name, sql: sql)) { body in
            try forEachRow("SELECT contact_id, doc FROM \(table) WHERE contact_id IN", ids, sql: sql) { row in
                guard let slot = row[0].int64, let doc = row[1].bytes else { return }
                try body(Int(slot), doc)
            }
        }
        try provider.load(stored, into: &book)
    }

    /// Calls `body` with every row of `select` (`SELECT … FROM table`, no clause after) in
    /// ascending `key` (an integer column, unique, the first one selected), `pageSize` rows per
    /// statement: a whole table is never held at once (PostgreSQL's driver receives a
    /// statement's rows before the first is handed over). Within one transaction (a
    /// repeatable-read one on PostgreSQL) the pages are one state.
    public static func scan(
        _ select: String, key: String, pageSize: Int = 50_000, sql: any SQLExecutor, _ body: ([SQLValue]) throws -> Void
    ) throws {
        var after = Int64.min
        while true {
            var rows = 0
            try sql.forEachRow(select + " WHERE \(key) > ? ORDER BY \(key) LIMIT ?", [.integer(after), .integer(Int64(pageSize))]) { row in
                rows += 1
                after = row[0].int64 ?? after
                try body(row)
            }
            if rows < pageSize { return }
        }
    }

    /// Runs `select` (ending in `IN`) over `keys` 500 at a time, placeholders only.
    public static func forEachRow(_ select: String, _ keys: [SQLValue], sql: any SQLExecutor, _ body: ([SQLValue]) throws -> Void) throws {
        var start = 0
        while start < keys.count {
            let chunk = Array(keys[start..<min(start + 500, keys.count)])
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            try sql.forEachRow(select + " (" + marks + ")", chunk, body)
            start += chunk.count
        }
    }

    static func definitions(of provider: String, sql: any SQLExecutor) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        try sql.forEachRow("SELECT key, doc FROM part_definition WHERE provider = ?", [.text(provider)]) { row in
            if let key = row[0].string, let doc = row[1].bytes { out[key] = doc }
        }
        return out
    }
}
