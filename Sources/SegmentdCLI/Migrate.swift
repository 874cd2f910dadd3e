import ArgumentParser
import Foundation
import Logging
import PostgresStore
import SegmentCore
import SegmentdApp

/// `segmentd migrate --from FILE.sqlite --to postgres://… --book NAME`: copies a book from its
/// SQLite file into a fleet's PostgreSQL store.
struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a book from its SQLite file into PostgreSQL (serve --store), keeping every contact, segment, trigger and event.",
        discussion: """
            Copies every table of the book, row for row with the same keys: contact ids, segment \
            and trigger ids and event cursors stay what they were, so trigger baselines carry over \
            (the next write fires exactly what it would have fired on SQLite) and event consumers \
            resume from the cursors they hold. The copy is one PostgreSQL transaction under the \
            book's write lock: if anything fails, or the command is interrupted, nothing is copied.

            FILE is a book of a stopped server (segmentd-data/books/NAME.sqlite, or the --db file) \
            or a backup of one (segmentd backup). A file a server has open is refused: stop the \
            server or migrate a backup. A file written by an earlier segmentd is first brought to \
            the current layout, as serve would. The file is otherwise left as it was: keep it as \
            the book's backup.

            The PostgreSQL book is created if it does not exist (schema segmentd_NAME) and must be \
            empty: a book with contacts, segments, triggers, suppressions, events or a version is \
            never overwritten.

            Prints one line per table (rows copied) and the book's version. Exit status 1 on error.

            Examples:
              segmentd migrate --from segmentd-data/books/default.sqlite --to postgres://segmentd@db.internal/segments --book default
              SEGMENTD_STORE=postgres://segmentd@/segments?host=/run/postgresql segmentd migrate --from acme.sqlite --book acme
            """)

    @Option(help: ArgumentHelp("The SQLite book to copy: a stopped server's file or a backup.", valueName: "file")) var from: String
    @Option(help: ArgumentHelp(
        "The PostgreSQL store, as serve --store takes it: postgres://USER[:PASSWORD]@HOST[:PORT]/DB or postgres://USER@/DB?host=/socket/dir (default: $SEGMENTD_STORE, kept out of the process list).",
        valueName: "url"))
    var to: String?
    @Option(help: ArgumentHelp("The book's name in PostgreSQL (1-64 characters of a-z, 0-9, _ and -).", valueName: "name")) var book: String
    @Option(help: "Progress line on stderr: auto (when it is a terminal), always or never.") var progress = "auto"

    func validate() throws {
        guard ProgressMode(rawValue: progress) != nil else { throw ValidationError("--progress must be auto, always or never") }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let store = to ?? environment["SEGMENTD_STORE"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw ValidationError("give the PostgreSQL store: --to postgres://USER@HOST/DB, or set SEGMENTD_STORE")
        }
        let line = ProgressLine(enabled: ProgressMode(rawValue: progress)!.isEnabled)
        let report: MigrationReport
        let url: PostgresURL
        do {
            url = try PostgresURL(store)
            // Warnings (the only level logged) go to stderr, never into the summary on stdout.
            LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
            var logger = Logger(label: "segmentd.migrate")
            logger.logLevel = .warning
            report = try BookMigration.copy(from: from, to: url, book: book, registry: try Segmentd.registry(), logger: logger) { step in
                line.update { elapsed in
                    let fraction = step.totalAll > 0 ? Double(step.copiedAll) / Double(step.totalAll) : 1
                    return "\(ProgressLine.bar(fraction)) \(step.table): \(ProgressLine.count(step.copied))/\(ProgressLine.count(step.total)) rows, "
                        + "\(ProgressLine.rate(Double(step.copiedAll), over: elapsed)) rows/s, \(ProgressLine.eta(fraction: fraction, elapsed: elapsed)) left"
                }
            }
        } catch {
            line.clear()
            throw CommandFailure("\(error)")
        }
        line.clear()
        let width = report.tables.map(\.name.count).max() ?? 0
        for table in report.tables {
            print(table.name + ":" + String(repeating: " ", count: width - table.name.count + 1) + "\(table.rows) " + (table.rows == 1 ? "row" : "rows"))
        }
        print("book \(report.book): version \(report.version), copied to \(url) (schema \(report.schema)) in \(String(format: "%.1f", line.elapsed)) s")
    }
}
