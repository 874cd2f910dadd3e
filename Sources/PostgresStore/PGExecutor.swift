import SegmentCore

/// The `SQLExecutor` handed to ``PGConnection/transaction(_:)``'s body.
public struct PGExecutor: SQLExecutor {
    public let connection: PGConnection

    public func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        try connection.execute(sql, arguments)
    }

    public func forEachRow(_ sql: String, _ arguments: [SQLValue], _ body: ([SQLValue]) throws -> Void) throws {
        try connection.forEachRow(sql, arguments, body)
    }

    /// Unsupported: PostgreSQL has no rowid. Always 0; use `INSERT … RETURNING id` with
    /// ``forEachRow(_:_:_:)`` instead.
    public var lastInsertRowID: Int64 { 0 }

    /// `pg_advisory_xact_lock`: waits for the lock (it holds it once this returns), held until
    /// this transaction ends.
    public func advisoryXactLock(_ key: Int64) throws {
        try connection.forEachRow(try Self.lockStatement(key), []) { _ in }
    }

    /// A statement that takes transaction lock `key` and, when given, queues a notification
    /// (delivered at commit), and returns no rows: a DO block, with the key and the texts
    /// written into it (an integer; texts without `$` or NUL, quotes doubled).
    ///
    /// Why no rows: a `SELECT pg_advisory_xact_lock(…)` that waited for the lock was seen never
    /// to complete under load: PostgreSQL had answered (the bytes sat unread in the socket) but
    /// postgres-nio had stopped reading the connection while the statement's row description
    /// was in and its row was not yet asked for. A statement without rows is read to its end.
    static func lockStatement(_ key: Int64, notify: (channel: String, payload: String)? = nil) throws -> String {
        func literal(_ text: String) throws -> String {
            guard !text.contains("$"), !text.contains("\0") else {
                throw SegmentError(.internal, "a NOTIFY channel or payload written into SQL may not hold $ or NUL: \(text)")
            }
            return "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "''") + "'"
        }
        var body = "PERFORM pg_advisory_xact_lock(\(key));"
        if let notify { body += " PERFORM pg_notify(\(try literal(notify.channel)), \(try literal(notify.payload)));" }
        return "DO $segmentd$BEGIN " + body + " END$segmentd$"
    }

    /// `pg_try_advisory_xact_lock`: false when another transaction holds it.
    public func tryAdvisoryXactLock(_ key: Int64) throws -> Bool {
        try connection.query("SELECT pg_try_advisory_xact_lock(?)", [.integer(key)]).first?.first == .integer(1)
    }

    /// `pg_notify` inside the transaction: delivered when it commits, dropped if it rolls back.
    public func notify(_ channel: String, _ payload: String) throws {
        try execute("SELECT pg_notify(?, ?)", [.text(channel), .text(payload)])
    }
}
