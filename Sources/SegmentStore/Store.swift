import Foundation
import GRDB
import GRDBSQLite
import SegmentCore
import Synchronization

/// The durable side of segmentd: one SQLite file in WAL mode, written by one writer.
///
/// Every write runs in one transaction on GRDB's serial writer queue; `afterCommit` runs on
/// that same queue right after the commit, so the engine publishes a new snapshot in commit
/// order and no later write can start from an older state.
///
/// ```swift
/// let store = try Store(path: "segmentd.sqlite", migrations: CoreSchema.migrations + providerMigrations)
/// let n = try await store.write({ sql in try sql.execute("…", []); return 1 }, afterCommit: { _ in })
/// ```
public final class Store: Sendable {
    let pool: DatabasePool
    public let path: String
    /// nil when read-only.
    private let checkpointer: WALCheckpointer?
    /// Held from before the first connection opens until the store is closed (nil when
    /// read-only).
    private let lock: DatabaseLock?
    private let operationCount = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)

    /// Reads and write transactions run since the store opened (start-up loading excluded):
    /// what background work costs, observable.
    public var operations: Int { operationCount.load(ordering: .relaxed) }

    /// The size of the write-ahead log file (`PATH-wal`) in bytes; 0 when there is none.
    public var walBytes: Int {
        var info = stat()
        guard stat(path + "-wal", &info) == 0 else { return 0 }
        return Int(info.st_size)
    }

    /// Opens (creating if needed) the database at `path` and applies `migrations` in order.
    ///
    /// Throws a `conflict` ``SegmentError`` naming the holder's pid while another store, in
    /// this process or another, has the same database open (see ``DatabaseLock``).
    /// `readOnly` opens an existing database for reading only, without the lock, migrations
    /// or checkpoints: for reading a database that another store serves; writes then fail.
    public init(path: String, migrations: [StoreMigration], readOnly: Bool = false) throws {
        self.lock = readOnly ? nil : try DatabaseLock(databasePath: path)
        var config = Configuration()
        config.readonly = readOnly
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            // FULL: an acknowledged write survives power loss, not only a process crash.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw SegmentError(.internal, "cannot open database \(path): \(error)")
        }
        self.path = path
        guard !readOnly else {
            checkpointer = nil
            return
        }
        var migrator = DatabaseMigrator()
        for migration in migrations {
            let sql = migration.sql, convert = migration.convert
            migrator.registerMigration(migration.name) { db in
                try db.execute(sql: sql)
                try convert?(GRDBExecutor(db: db))
            }
        }
        // A newer segmentd (or one built with dimensions this one lacks) migrated this
        // database further than this one knows: its schema is not this binary's to read or
        // write (there is no downgrade).
        if try pool.read({ db in try migrator.hasBeenSuperseded(db) }) {
            let applied = try pool.read { db in try migrator.appliedIdentifiers(db) }
            let unknown = applied.subtracting(migrations.map(\.name)).sorted().joined(separator: ", ")
            throw SegmentError(
                .conflict,
                "database \(path) was migrated by a newer segmentd, or by one built with dimensions this one lacks (storage migrations it does not know: \(unknown)); run that one, or restore a backup taken before")
        }
        try migrator.migrate(pool)
        // Checkpoints run off the writer (see WALCheckpointer); the store keeps the
        // checkpointer alive as long as the writer connection that calls it.
        let checkpointer = WALCheckpointer(path: path)
        self.checkpointer = checkpointer
        pool.writeWithoutTransaction { db in checkpointer.install(on: db.sqliteConnection!) }
    }

    /// Runs `body` in one write transaction; commits if it returns, rolls back if it throws.
    /// `afterCommit` then runs on the writer queue before any other write.
    public func write<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        operationCount.add(1, ordering: .relaxed)
        return try await pool.writeWithoutTransaction { db in
            var result: T?
            try db.inTransaction(.immediate) {
                result = try body(GRDBExecutor(db: db))
                return .commit
            }
            afterCommit(result!)
            return result!
        }
    }

    /// Runs `body` on a read-only connection (a consistent view of the last commit).
    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) throws -> T) async throws -> T {
        operationCount.add(1, ordering: .relaxed)
        return try await pool.read { db in try body(GRDBExecutor(db: db)) }
    }

    /// Runs `body` on a read-only connection of its own to the database at `path`, without
    /// taking the lock: for looking at what a running store persisted.
    public static func inspect<T>(path: String, _ body: (any SQLExecutor) throws -> T) throws -> T {
        var config = Configuration()
        config.readonly = true
        return try DatabaseQueue(path: path, configuration: config).read { db in try body(GRDBExecutor(db: db)) }
    }

    /// Closes the idle reader connections and frees the writer's caches: after loading, a
    /// book of a many-book server keeps one connection, not the readers loading opened.
    /// Readers open again when a read needs one.
    public func releaseMemory() {
        pool.releaseMemory()
    }

    /// Runs `body` synchronously on a read-only connection (start-up loading).
    public func readNow<T>(_ body: (any SQLExecutor) throws -> T) throws -> T {
        try pool.read { db in try body(GRDBExecutor(db: db)) }
    }

    /// Writes a consistent copy of the live database to `path` (SQLite's online backup).
    public func backup(to path: String) throws {
        let target = try DatabaseQueue(path: path)
        try pool.backup(to: target)
    }

    /// Returns once the background checkpoints asked for so far have run. It starts none: it
    /// lets a test see what the background checkpointer does without timing it.
    public func waitForBackgroundCheckpoints() { checkpointer?.drain() }

    /// Checkpoints the WAL (unless read-only), closes every connection and releases the lock.
    public func close() throws {
        // Idempotent: a second close (an owner and a fixture both closing) must not reach
        // the closed connections again.
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        defer { lock?.release() }
        guard let checkpointer else { return try pool.close() }
        checkpointer.close()
        _ = try? pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        try pool.close()
    }
}

/// `SQLExecutor` over a GRDB connection, with statements cached per SQL text.
///
/// Arguments are bound and rows read with SQLite's own calls on GRDB's cached statement:
/// building GRDB's `StatementArguments` (an array of existentials) per row was half the cost of
/// a write in the ingest profile, and `Row` cursors dominated start-up.
struct GRDBExecutor: SQLExecutor {
    let db: Database

    func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        let statement = try db.cachedStatement(sql: sql)
        let handle = statement.sqliteStatement
        let bytes = try bind(arguments, to: handle, sql: sql)
        defer { Self.finish(handle, bytes) }
        var code = sqlite3_step(handle)
        while code == SQLITE_ROW { code = sqlite3_step(handle) }
        guard code == SQLITE_DONE else { throw failure(code, sql) }
    }

    func forEachRow(_ sql: String, _ arguments: [SQLValue], _ body: ([SQLValue]) throws -> Void) throws {
        let statement = try db.cachedStatement(sql: sql)
        let handle = statement.sqliteStatement
        let bytes = try bind(arguments, to: handle, sql: sql)
        defer { Self.finish(handle, bytes) }
        let width = Int(sqlite3_column_count(handle))
        var values = [SQLValue](repeating: .null, count: width)
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw failure(code, sql) }
            for i in 0..<width {
                let column = Int32(i)
                switch sqlite3_column_type(handle, column) {
                case SQLITE_INTEGER: values[i] = .integer(sqlite3_column_int64(handle, column))
                case SQLITE_FLOAT: values[i] = .real(sqlite3_column_double(handle, column))
                case SQLITE_TEXT: values[i] = .text(String(decoding: Self.bytes(handle, column), as: UTF8.self))
                case SQLITE_BLOB: values[i] = .blob(Array(Self.bytes(handle, column)))
                default: values[i] = .null
                }
            }
            try body(values)
        }
    }

    var lastInsertRowID: Int64 { db.lastInsertedRowID }

    /// A text or blob column's bytes, valid until the next step (empty when SQLite has none).
    private static func bytes(_ handle: OpaquePointer, _ column: Int32) -> UnsafeRawBufferPointer {
        // Pointer first, then its size: the order SQLite documents as safe.
        let start = sqlite3_column_blob(handle, column)
        return UnsafeRawBufferPointer(start: start, count: Int(sqlite3_column_bytes(handle, column)))
    }

    /// Binds `arguments`. Text and blob bytes are copied once into one buffer, returned to the
    /// caller to free after the statement has run, and bound in place (`SQLITE_STATIC`):
    /// bound with `SQLITE_TRANSIENT`, SQLite allocated and copied every value, under its
    /// allocator's mutex — 300 times for one 100-row event insert.
    private func bind(_ arguments: [SQLValue], to handle: OpaquePointer, sql: String) throws -> UnsafeMutableRawBufferPointer? {
        sqlite3_clear_bindings(handle)
        guard Int(sqlite3_bind_parameter_count(handle)) == arguments.count else {
            throw SegmentError(.internal, "SQL expects \(sqlite3_bind_parameter_count(handle)) arguments, got \(arguments.count): \(sql)")
        }
        var total = 0
        for argument in arguments {
            switch argument {
            case .text(let s): total += s.utf8.count
            case .blob(let b): total += b.count
            case .null, .integer, .real: break
            }
        }
        let buffer = total > 0 ? UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 1) : nil
        var offset = 0
        /// Copies `source` into the buffer; where it starts (a valid address even when empty).
        func place(_ source: UnsafeRawBufferPointer) -> UnsafeRawPointer {
            guard let buffer, source.count > 0 else { return UnsafeRawPointer(emptyText) }
            let start = buffer.baseAddress! + offset
            start.copyMemory(from: source.baseAddress!, byteCount: source.count)
            offset += source.count
            return UnsafeRawPointer(start)
        }
        for (i, argument) in arguments.enumerated() {
            let index = Int32(i + 1)
            let code: Int32
            switch argument {
            case .null: code = sqlite3_bind_null(handle, index)
            case .integer(let x): code = sqlite3_bind_int64(handle, index, x)
            case .real(let x): code = sqlite3_bind_double(handle, index, x)
            case .text(var s):
                // Bytes and length, not a C string: text may hold NUL.
                code = s.withUTF8 { bytes in
                    sqlite3_bind_text(handle, index, place(UnsafeRawBufferPointer(bytes)).assumingMemoryBound(to: CChar.self), Int32(bytes.count), nil)
                }
            case .blob(let bytes):
                code = bytes.withUnsafeBytes { raw in sqlite3_bind_blob(handle, index, place(raw), Int32(raw.count), nil) }
            }
            guard code == SQLITE_OK else {
                Self.finish(handle, buffer)
                throw failure(code, sql)
            }
        }
        return buffer
    }

    /// Resets the statement and drops its bindings before freeing the bytes they point into.
    private static func finish(_ handle: OpaquePointer, _ bytes: UnsafeMutableRawBufferPointer?) {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        bytes?.deallocate()
    }

    private func failure(_ code: Int32, _ sql: String) -> SegmentError {
        let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
        return SegmentError(.internal, "SQLite error \(code) (\(message)) in: \(sql)")
    }
}

/// Bound for empty text (whose UTF-8 buffer may have no address).
nonisolated(unsafe) private let emptyText = UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
