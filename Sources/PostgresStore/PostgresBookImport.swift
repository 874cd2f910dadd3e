#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import SegmentCore
import SegmentStore

/// Copies a book from an SQLite file into a PostgreSQL book that holds nothing yet: what
/// `segmentd migrate` runs to move a server's book into a fleet's store.
///
/// The file is opened as a server opens it (a ``Store``: it takes the file's lock, so a
/// running server's file is refused, and applies the migrations it lacks, so an older
/// file is brought to the current layout first). The PostgreSQL book is opened as a node
/// opens it (``PostgresBookStore``: its schema is created and registered if needed). Then
/// every row of every table is copied with the same keys: contact ids (the slots), segment
/// and trigger ids and event cursors stay what they were, so trigger baselines, event
/// consumers' cursors and clients' segment ids hold. It is all one PostgreSQL transaction
/// under the book's write lock: a failure, an interruption or a lost connection leaves
/// nothing copied, and no node writes the book meanwhile.
///
/// ```swift
/// let report = try PostgresBookImport.copy(
///     from: "segmentd-data/books/acme.sqlite", to: PostgresURL("postgres://segmentd@/segments?host=/run/postgresql"),
///     book: "acme", providers: registry.providers)
/// print(report.rows("contact") ?? 0, report.version)
/// ```
public enum PostgresBookImport {
    /// Rows per `INSERT` statement (every value a placeholder; the widest table, `event`,
    /// then binds 3,500 values, far under PostgreSQL's 65,535).
    public static let rowsPerStatement = 500

    /// What was copied: rows per table, in copy order, and the book's version.
    public struct Report: Sendable, Equatable {
        public struct Table: Sendable, Equatable {
            public var name: String
            public var rows: Int
        }

        public var book: String
        /// The book's PostgreSQL schema.
        public var schema: String
        public var version: Int64
        public var tables: [Table]

        /// The rows copied into `table`, nil for a table that is not copied.
        public func rows(_ table: String) -> Int? { tables.first { $0.name == table }?.rows }
    }

    /// Where a copy is: rows of `table` copied so far out of its `total`, and of all tables.
    public struct Progress: Sendable {
        public var table: String
        public var copied: Int
        public var total: Int
        public var copiedAll: Int
        public var totalAll: Int
    }

    /// Copies the SQLite book at `sqlitePath` into book `book` of the database at `url`.
    ///
    /// Throws, copying nothing, when the file is missing or is not a segmentd book, when a
    /// server holds it (`conflict`: stop it, or migrate a backup), when the file was migrated
    /// by a newer segmentd, when the PostgreSQL book already has contacts, segments,
    /// triggers, suppressions, events or definitions, or a version (`conflict`: it is never
    /// overwritten), and when PostgreSQL is unreachable or refuses a statement. `progress` is
    /// called after each statement, on the calling thread.
    public static func copy(
        from sqlitePath: String, to url: PostgresURL, book: String, providers: [any DimensionProvider],
        logger: Logger = Logger(label: "segmentd.migrate"), progress: (Progress) -> Void = { _ in }
    ) throws -> Report {
        try checkSource(sqlitePath)
        let source = try Store(path: sqlitePath, migrations: PartStorage.sqliteMigrations(for: providers))
        defer { try? source.close() }
        let target = try PostgresBookStore(url: url, book: book, providers: providers, listens: false, logger: logger)
        defer { try? target.close() }
        let tables = Self.tables(providers)
        return try source.readNow { sqlite in
            let counts = try tables.map { try count($0.name, sqlite) }
            let totalAll = try counts.reduce(0, +) + count("meta", sqlite)
            var copiedAll = 0
            func advance(_ table: String, copied: Int, total: Int, by rows: Int) {
                copiedAll += rows
                progress(Progress(table: table, copied: copied, total: total, copiedAll: copiedAll, totalAll: totalAll))
            }
            return try target.exclusively { pg in
                try refuseUnlessEmpty(pg, book: book, schema: target.schema)
                let sequences = try sqliteSequences(sqlite)
                let (version, metaRows) = try copyMeta(from: sqlite, to: pg, advance: advance)
                var report = Report(book: book, schema: target.schema, version: version, tables: [.init(name: "meta", rows: metaRows)])
                for (table, total) in zip(tables, counts) {
                    let (rows, highest) = try copyRows(of: table, total: total, from: sqlite, to: pg, advance: advance)
                    guard rows == total else {
                        throw SegmentError(.internal, "\(table.name): read \(rows) rows of the \(total) counted; nothing was copied")
                    }
                    if let identity = table.identity {
                        var next = max(highest, sequences[table.name] ?? 0)
                        // Retention's deletions leave no row: cursors continue past the pruned ones.
                        if table.name == "event" { next = max(next, try metaValue("events_pruned_through", sqlite)) }
                        try setSequence(table: table.name, column: identity, past: next, pg)
                    }
                    report.tables.append(.init(name: table.name, rows: rows))
                }
                // Nodes that have this (empty) book open wake up and catch up.
                try pg.notify(target.schema, "")
                return report
            }
        }
    }

    // MARK: Tables

    enum Kind { case integer, real, text, blob }

    /// One table to copy: its columns (with the PostgreSQL type each value is bound as), the
    /// order rows are read in (its key), and its generated key if it has one.
    struct Table {
        let name: String
        let columns: [(name: String, kind: Kind)]
        let order: String
        let identity: String?
    }

    /// Every table of a book but `meta` (copied on its own) and `change_log` (PostgreSQL's
    /// alone), in copy order: the core's, then each provider's documents.
    static func tables(_ providers: [any DimensionProvider]) -> [Table] {
        var list = [
            Table(name: "contact", columns: [("id", .integer), ("email", .text), ("email_key", .text), ("created_at", .real)], order: "id", identity: "id"),
            Table(name: "suppression", columns: [("email_key", .text), ("email", .text), ("reason", .text), ("added_at", .real)], order: "email_key", identity: nil),
            Table(
                name: "segment",
                columns: [
                    ("id", .integer), ("name", .text), ("name_key", .text), ("description", .text), ("filters", .text), ("review_needed", .integer),
                    ("created_at", .real), ("updated_at", .real), ("last_used_at", .real),
                ],
                order: "id", identity: "id"),
            Table(name: "trigger", columns: [("id", .integer), ("segment_id", .integer), ("on_enter", .integer), ("on_exit", .integer), ("created_at", .real)], order: "id", identity: "id"),
            Table(name: "trigger_baseline", columns: [("chunk", .integer), ("trigger_id", .integer), ("bits", .blob)], order: "chunk, trigger_id", identity: nil),
            Table(
                name: "event",
                columns: [("cursor", .integer), ("trigger_id", .integer), ("segment_id", .integer), ("email", .text), ("type", .text), ("at", .real), ("cause", .text)],
                order: "cursor", identity: "cursor"),
            Table(name: "part_definition", columns: [("provider", .text), ("key", .text), ("doc", .blob)], order: "provider, key", identity: nil),
        ]
        for provider in providers {
            list.append(Table(name: PartStorage.table(provider.name), columns: [("contact_id", .integer), ("doc", .blob)], order: "contact_id", identity: nil))
        }
        return list
    }

    /// Copies `table`'s rows in key order, `rowsPerStatement` to a statement; returns how many
    /// and the highest generated key copied (0 for none).
    static func copyRows(
        of table: Table, total: Int, from sqlite: any SQLExecutor, to pg: PGExecutor, advance: (_ table: String, _ copied: Int, _ total: Int, _ rows: Int) -> Void
    ) throws -> (rows: Int, highest: Int64) {
        let columns = table.columns.map(\.name).joined(separator: ", ")
        let prefix = "INSERT INTO \(table.name)(\(columns)) VALUES "
        let row = "(" + Array(repeating: "?", count: table.columns.count).joined(separator: ", ") + ")"
        let full = prefix + Array(repeating: row, count: rowsPerStatement).joined(separator: ", ")
        var values: [SQLValue] = []
        values.reserveCapacity(table.columns.count * rowsPerStatement)
        var pending = 0, rows = 0
        var highest: Int64 = 0
        func flush() throws {
            guard pending > 0 else { return }
            try pg.execute(pending == rowsPerStatement ? full : prefix + Array(repeating: row, count: pending).joined(separator: ", "), values)
            rows += pending
            advance(table.name, rows, total, pending)
            values.removeAll(keepingCapacity: true)
            pending = 0
        }
        try sqlite.forEachRow("SELECT \(columns) FROM \(table.name) ORDER BY \(table.order)", []) { cells in
            for (cell, column) in zip(cells, table.columns) {
                values.append(try convert(cell, to: column.kind, table: table.name, column: column.name))
            }
            if table.identity != nil, let key = cells[0].int64 { highest = max(highest, key) }
            pending += 1
            if pending == rowsPerStatement { try flush() }
        }
        try flush()
        return (rows, highest)
    }

    /// A value as its PostgreSQL column takes it. SQLite keeps whatever storage class a value
    /// was written with; PostgreSQL binds each as its own type, so an integer in a `REAL`
    /// column goes as a double, text in a `BLOB` as its bytes. NULL stays NULL.
    static func convert(_ value: SQLValue, to kind: Kind, table: String, column: String) throws -> SQLValue {
        switch (kind, value) {
        case (_, .null), (.integer, .integer), (.real, .real), (.text, .text), (.blob, .blob): return value
        case (.real, .integer(let n)): return .real(Double(n))
        case (.integer, .real(let x)) where x.rounded() == x && abs(x) < 9.0e15: return .integer(Int64(x))
        case (.blob, .text(let s)): return .blob(Array(s.utf8))
        case (.text, .blob(let bytes)):
            if let text = String(validating: bytes, as: UTF8.self) { return .text(text) }
        default: break
        }
        throw SegmentError(.invalidParams, "\(table).\(column) holds \(value), which its PostgreSQL column cannot take; nothing was copied")
    }

    /// Copies `meta` but the fleet's change sequence, which starts afresh; returns the book's
    /// version and the rows written.
    ///
    /// The change sequence is set to 1 with no change record: a node that had the (empty)
    /// book open, at sequence 0, finds a gap on its next catch-up and reloads the whole book
    /// instead of going on from an empty one; nodes that open it later start at 1.
    static func copyMeta(
        from sqlite: any SQLExecutor, to pg: PGExecutor, advance: (_ table: String, _ copied: Int, _ total: Int, _ rows: Int) -> Void
    ) throws -> (version: Int64, rows: Int) {
        var values: [SQLValue] = []
        var version: Int64 = 0
        try sqlite.forEachRow("SELECT key, value FROM meta ORDER BY key", []) { row in
            guard let key = row[0].string, key != "change_sequence" else { return }
            let value = try convert(row[1], to: .integer, table: "meta", column: "value (key \(key))")
            if key == "version" { version = value.int64 ?? 0 }
            values += [.text(key), value]
        }
        values += [.text("change_sequence"), .integer(1)]
        let rows = values.count / 2
        try pg.execute("INSERT INTO meta(key, value) VALUES " + Array(repeating: "(?, ?)", count: rows).joined(separator: ", "), values)
        advance("meta", rows, rows, rows)
        return (version, rows)
    }

    // MARK: Checks

    /// The file exists and is an SQLite database with a book's tables, before a ``Store``
    /// opens it (which would create a missing file, and migrate any SQLite database into one);
    /// a server that holds it is refused with what to do instead (the store's own refusal,
    /// should a server take it in between, says to stop it).
    static func checkSource(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SegmentError(.notFound, "\(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw SegmentError(.invalidParams, "\(path) is not a file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SegmentError(.invalidParams, "\(path): \(String(cString: strerror(errno)))") }
        var header = [UInt8](repeating: 0, count: 16)
        let got = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 16, 0) }
        close(fd)
        guard got == 16, header == Array("SQLite format 3\0".utf8) else {
            throw SegmentError(.invalidParams, "\(path) is not an SQLite database (a segmentd book file, such as segmentd-data/books/NAME.sqlite)")
        }
        let lock = try DatabaseLock(
            lockFile: path + ".lock", subject: "database \(path)",
            advice: "a server's book is copied while no server has it open: stop that server first, or migrate a backup of the book (segmentd backup FILE --book NAME)")
        lock.release()
        let tables: Set<String>
        do {
            tables = try Store.inspect(path: path) { sql in
                var names: Set<String> = []
                try sql.forEachRow("SELECT name FROM sqlite_master WHERE type = 'table'", []) { if let name = $0[0].string { names.insert(name) } }
                return names
            }
        } catch {
            throw SegmentError(.invalidParams, "cannot read \(path) as an SQLite database: \(error)")
        }
        guard tables.isSuperset(of: ["meta", "contact", "segment"]) else {
            throw SegmentError(.invalidParams, "\(path) is an SQLite database but not a segmentd book (it has no contact, segment and meta tables)")
        }
    }

    /// Refuses a PostgreSQL book that holds anything, or that was written to: migrating never
    /// overwrites or merges. (A book that nodes merely opened has no rows, not even in `meta`.)
    static func refuseUnlessEmpty(_ pg: PGExecutor, book: String, schema: String) throws {
        var found: [String] = []
        for (table, what) in [("contact", "contact"), ("segment", "segment"), ("trigger", "trigger"), ("event", "event"), ("suppression", "suppression"), ("part_definition", "definition")] {
            var n: Int64 = 0
            try pg.forEachRow("SELECT COUNT(*) FROM \(table)", []) { n = $0[0].int64 ?? 0 }
            if n > 0 { found.append("\(n) \(what)" + (n == 1 ? "" : "s")) }
        }
        // A book that was written to, or migrated into, has meta keys even with no rows left.
        var meta: [String: Int64] = [:]
        try pg.forEachRow("SELECT key, value FROM meta", []) { row in if let key = row[0].string { meta[key] = row[1].int64 ?? 0 } }
        if found.isEmpty, !meta.isEmpty {
            if let version = meta["version"], version > 0 {
                found.append("version \(version)")
            } else {
                found.append("meta keys " + meta.keys.sorted().joined(separator: ", ") + " (it was migrated into before)")
            }
        }
        guard found.isEmpty else {
            throw SegmentError(
                .conflict,
                "book \(book) in PostgreSQL (schema \(schema)) is not empty: it has \(found.joined(separator: ", ")); migrate never overwrites a book: give another --book, or drop that one first (books.drop) if it is not wanted")
        }
    }

    // MARK: Keys

    /// SQLite's `AUTOINCREMENT` high-water marks: a deleted row's key is never given again,
    /// so the copy's sequences continue past them, not past the highest key left.
    static func sqliteSequences(_ sqlite: any SQLExecutor) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        try sqlite.forEachRow("SELECT name, seq FROM sqlite_sequence", []) { row in
            if let name = row[0].string, let seq = row[1].int64 { out[name] = seq }
        }
        return out
    }

    /// The identity sequence of `table.column` gives `past + 1` next (1 when `past` is 0).
    static func setSequence(table: String, column: String, past: Int64, _ pg: PGExecutor) throws {
        if past > 0 {
            try pg.execute("SELECT setval(pg_get_serial_sequence(?, ?), ?)", [.text(table), .text(column), .integer(past)])
        } else {
            try pg.execute("SELECT setval(pg_get_serial_sequence(?, ?), 1, false)", [.text(table), .text(column)])
        }
    }

    static func count(_ table: String, _ sqlite: any SQLExecutor) throws -> Int {
        var n: Int64 = 0
        try sqlite.forEachRow("SELECT COUNT(*) FROM \(table)", []) { n = $0[0].int64 ?? 0 }
        return Int(n)
    }

    static func metaValue(_ key: String, _ sqlite: any SQLExecutor) throws -> Int64 {
        var value: Int64 = 0
        try sqlite.forEachRow("SELECT value FROM meta WHERE key = ?", [.text(key)]) { value = $0[0].int64 ?? 0 }
        return value
    }
}

extension PostgresBookStore {
    /// Runs `body` in one transaction under the book's write lock, on a connection of its
    /// own (the book's schema first on its search path); commits if it returns.
    func exclusively<T>(_ body: (PGExecutor) throws -> T) throws -> T {
        let pg = try PGConnection.connect(url, logger: logger)
        defer { pg.close() }
        try pg.execute("SET search_path TO \(quotedSchema)")
        return try pg.transaction { sql in
            try sql.advisoryXactLock(lockKey)
            return try body(sql)
        }
    }
}
