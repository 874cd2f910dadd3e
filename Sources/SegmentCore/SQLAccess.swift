/// A value bound to, or read from, SQL: the four storage classes of SQLite.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var int64: Int64? {
        switch self {
        case .integer(let i): return i
        case .real(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    public var double: Double? {
        switch self {
        case .integer(let i): return Double(i)
        case .real(let d): return d
        default: return nil
        }
    }

    public var string: String? {
        if case .text(let s) = self { return s }
        return nil
    }

    public var bytes: [UInt8]? {
        if case .blob(let b) = self { return b }
        return nil
    }
}

/// SQL access handed to a provider inside a write transaction or while loading.
///
/// It keeps plugins free of any SQLite library (they depend on the core only) while they
/// still own their tables. Arguments are always bound, never spliced into the SQL text.
///
/// ```swift
/// try sql.execute("INSERT INTO contact_labels(contact_id, label) VALUES (?, ?)",
///                 [.integer(Int64(slot)), .text(label)])
/// ```
public protocol SQLExecutor {
    func execute(_ sql: String, _ arguments: [SQLValue]) throws
    func forEachRow(_ sql: String, _ arguments: [SQLValue], _ body: ([SQLValue]) throws -> Void) throws
    /// The rowid of the last row this connection inserted.
    var lastInsertRowID: Int64 { get }
}

/// A named schema step a provider contributes. Names are never reused and a shipped
/// migration is never edited: a change is a new migration.
///
/// `convert` runs after `sql` in the same transaction, for a conversion SQL cannot do exactly
/// (SQLite prints reals with at most 16 digits, so numbers are moved by Swift).
public struct StoreMigration: Sendable {
    public var name: String
    public var sql: String
    public var convert: (@Sendable (any SQLExecutor) throws -> Void)?

    public init(_ name: String, sql: String, convert: (@Sendable (any SQLExecutor) throws -> Void)? = nil) {
        self.name = name
        self.sql = sql
        self.convert = convert
    }
}
