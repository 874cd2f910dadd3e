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
            try pg.execute(Self.registry)
            return try pg.query("SELECT name FROM public.segmentd_books ORDER BY name").compactMap { $0.first?.string }
        }
    }

    public func contains(_ name: String) throws -> Bool {
        try session { pg in
            try pg.execute(Self.registry)
            return try !pg.query("SELECT 1 FROM public.segmentd_books WHERE name = ?", [.text(name)]).isEmpty
        }
    }

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
    static func register(_ name: String, schema: String, sql: any SQLExecutor) throws {
        try sql.execute(registry, [])
        try sql.execute("INSERT INTO public.segmentd_books(name, schema) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [.text(name), .text(schema)])
    }

    private func session<T>(_ body: (PGConnection) throws -> T) throws -> T {
        let pg = try PGConnection.connect(url, logger: logger)
        defer { pg.close() }
        return try body(pg)
    }
}
