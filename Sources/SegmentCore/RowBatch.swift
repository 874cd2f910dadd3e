/// Rows of one INSERT shape, written up to a hundred per statement.
///
/// One statement per row paid SQLite's per-statement work (~0.8 µs: reset, bind, program
/// start) for every row, several times per contact on ingest and once per trigger event.
/// Rows run in the order they were added. A statement is run when a hundred rows are
/// waiting and by `flush`; run any other statement on the same table through `execute`, so
/// the two stay in order (a `DELETE` after a buffered `INSERT OR REPLACE` of the same row
/// must see it). The SQL text is the caller's fixed prefix and `?` placeholders only. With
/// one writer, one statement's inserted rows get consecutive rowids: `endRow` and `flush`
/// return them.
///
/// ```swift
/// var rows = RowBatch("INSERT OR REPLACE INTO contact_status(contact_id, status)", width: 2)
/// rows.append(.integer(7)); rows.append(.integer(1)); try rows.endRow(sql)
/// try rows.flush(sql)
/// ```
public struct RowBatch {
    public static let rowsPerStatement = 100

    private let prefix: String
    private let suffix: String
    private let width: Int
    private let fullStatement: String
    private var values: [SQLValue] = []

    /// `prefix` is `INSERT … INTO table(columns)`; `width` is the number of columns; `suffix`
    /// follows the values (`ON CONFLICT …`).
    public init(_ prefix: String, width: Int, suffix: String = "") {
        self.prefix = prefix
        self.suffix = suffix
        self.width = width
        fullStatement = Self.statement(prefix, width: width, rows: Self.rowsPerStatement) + suffix
        values.reserveCapacity(width * Self.rowsPerStatement)
    }

    static func statement(_ prefix: String, width: Int, rows: Int) -> String {
        let row = "(" + Array(repeating: "?", count: width).joined(separator: ", ") + ")"
        return prefix + " VALUES " + Array(repeating: row, count: rows).joined(separator: ", ")
    }

    /// Adds the next value of the current row.
    public mutating func append(_ value: SQLValue) { values.append(value) }

    /// Ends the current row; runs the waiting rows when a statement's worth is waiting, and
    /// then returns their rowids.
    @discardableResult
    public mutating func endRow(_ sql: any SQLExecutor) throws -> ClosedRange<Int64>? {
        precondition(values.count % width == 0, "a row of \(prefix) has \(width) values")
        return values.count == width * Self.rowsPerStatement ? try flush(sql) : nil
    }

    /// Runs the waiting rows; their rowids, or `nil` if none waited.
    @discardableResult
    public mutating func flush(_ sql: any SQLExecutor) throws -> ClosedRange<Int64>? {
        guard !values.isEmpty else { return nil }
        let rows = values.count / width
        try sql.execute(rows == Self.rowsPerStatement ? fullStatement : Self.statement(prefix, width: width, rows: rows) + suffix, values)
        values.removeAll(keepingCapacity: true)
        let last = sql.lastInsertRowID
        return last - Int64(rows - 1)...last
    }

    /// Runs the waiting rows, then `statement` (another statement on the same table).
    public mutating func execute(_ statement: String, _ arguments: [SQLValue], _ sql: any SQLExecutor) throws {
        try flush(sql)
        try sql.execute(statement, arguments)
    }
}
