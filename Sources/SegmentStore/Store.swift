import Foundation
import GRDB
import SegmentCore

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

    /// Opens (creating if needed) the database at `path` and applies `migrations` in order.
    public init(path: String, migrations: [StoreMigration]) throws {
        var config = Configuration()
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
        var migrator = DatabaseMigrator()
        for migration in migrations {
            let sql = migration.sql
            migrator.registerMigration(migration.name) { db in try db.execute(sql: sql) }
        }
        try migrator.migrate(pool)
    }

    /// Runs `body` in one write transaction; commits if it returns, rolls back if it throws.
    /// `afterCommit` then runs on the writer queue before any other write.
    public func write<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        try await pool.writeWithoutTransaction { db in
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
        try await pool.read { db in try body(GRDBExecutor(db: db)) }
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

    /// Checkpoints the WAL and closes every connection.
    public func close() throws {
        try? pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        try pool.close()
    }
}

/// `SQLExecutor` over a GRDB connection, with statements cached per SQL text.
struct GRDBExecutor: SQLExecutor {
    let db: Database

    func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        let statement = try db.cachedStatement(sql: sql)
        try statement.execute(arguments: StatementArguments(arguments.map { $0.databaseValue }))
    }

    func forEachRow(_ sql: String, _ arguments: [SQLValue], _ body: ([SQLValue]) throws -> Void) throws {
        let statement = try db.cachedStatement(sql: sql)
        let rows = try Row.fetchCursor(statement, arguments: StatementArguments(arguments.map { $0.databaseValue }))
        let width = statement.columnCount
        var values = [SQLValue](repeating: .null, count: width)
        while let row = try rows.next() {
            for i in 0..<width {
                switch row[i] as DatabaseValue {
                case let v where v.isNull: values[i] = .null
                case let v:
                    switch v.storage {
                    case .int64(let x): values[i] = .integer(x)
                    case .double(let x): values[i] = .real(x)
                    case .string(let x): values[i] = .text(x)
                    case .blob(let x): values[i] = .text(String(decoding: x, as: UTF8.self))
                    case .null: values[i] = .null
                    }
                }
            }
            try body(values)
        }
    }
}

extension SQLValue {
    var databaseValue: DatabaseValue {
        switch self {
        case .null: return .null
        case .integer(let i): return i.databaseValue
        case .real(let d): return d.databaseValue
        case .text(let s): return s.databaseValue
        }
    }
}
