import Logging
import SegmentCore
import SegmentStore

/// The books of a PostgreSQL database: one schema each (see ``PostgresBookStore``), listed in
/// `public.segmentd_books` so that every node of a fleet finds the books any node created.
public struct PostgresBookSpace: BookSpace {
    public let url: PostgresURL
    let logger: Logger

    public init(url: PostgresURL, logger: Logger = Logger(label: "segmentd.postgres")) {
        self.url = url
        self.logger = logger
    }

    static let registry = "CREATE TABLE IF NOT EXISTS public.segmentd_books (name TEXT PRIMARY KEY, schema TEXT NOT NULL)"

    public func names() throws -> [String] {
        try session { pg in
            guard try Self.registryExists(pg) else { return [] }
            return try pg.query("SELECT name FROM public.segmentd_books ORDER BY name").compactMap { $0.first?.string }
        }
    }

    public func contains(_ name: String) throws -> Bool {
        try session { pg in
            guard try Self.registryExists(pg) else { return false }
            return try !pg.query("SELECT 1 FROM public.segmentd_books WHERE name = ?", [.text(name)]).isEmpty
        }
    }

    static func registryExists(_ pg: PGConnection) throws -> Bool {
        try pg.query("SELECT to_regclass('public.segmentd_books') IS NOT NULL").first?.first == .integer(1)
    }

    /// Serializes the creation of the registry (and of schemas): PostgreSQL's `IF NOT EXISTS`
    /// does not hold between concurrent transactions.
    static let registryLock: Int64 = PostgresBookStore.stableHash("segmentd.books.registry")

    public func drop(_ name: String) throws {
        let schema = PostgresBookStore.schema(of: name)
        try session { pg in
            try pg.transaction { sql in
                try sql.execute("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE", [])
                try sql.execute("DELETE FROM public.segmentd_books WHERE name = ?", [.text(name)])
            }
        }
    }

    /// Registers book `name` (its schema exists by now); a no-op when listed already.
    static func register(_ name: String, schema: String, sql: PGExecutor) throws {
        try sql.advisoryXactLock(registryLock)
        try sql.execute(registry, [])
        try sql.execute("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"", [])
        try sql.execute("INSERT INTO public.segmentd_books(name, schema) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [.text(name), .text(schema)])
    }

    private func session<T>(_ body: (PGConnection) throws -> T) throws -> T {
        let pg = try PGConnection.connect(url, logger: logger)
        defer { pg.close() }
        return try body(pg)
    }
}
