import Logging
import PostgresStore
import SegmentCore
import SegmentEngine

/// What `segmentd migrate` copied: rows per table and the book's version.
public typealias MigrationReport = PostgresBookImport.Report

/// `segmentd migrate`: a book of SQLite files moved into a fleet's PostgreSQL store.
///
/// ```swift
/// let report = try BookMigration.copy(
///     from: "segmentd-data/books/acme.sqlite", to: try PostgresURL("postgres://segmentd@/segments?host=/run/postgresql"), book: "acme")
/// for table in report.tables { print(table.name, table.rows) }
/// ```
public enum BookMigration {
    /// Copies the SQLite book at `sqlitePath` into PostgreSQL book `book`, which must be
    /// empty (see ``PostgresBookImport/copy(from:to:book:providers:logger:progress:)``): the
    /// same contacts (and slots), segments, triggers and their baselines, suppressions,
    /// events (and cursors) and definitions, in one transaction. `registry` must be the
    /// dimensions the book's server runs (their tables are copied).
    public static func copy(
        from sqlitePath: String, to url: PostgresURL, book: String, registry: DimensionRegistry = SegmentdApplication.builtInRegistry(),
        logger: Logger = Logger(label: "segmentd.migrate"), progress: (PostgresBookImport.Progress) -> Void = { _ in }
    ) throws -> MigrationReport {
        try BookCatalog.validate(name: book, path: "book")
        return try PostgresBookImport.copy(from: sqlitePath, to: url, book: book, providers: registry.providers, logger: logger, progress: progress)
    }
}
