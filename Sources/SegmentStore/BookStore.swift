import SegmentCore

/// Where one book's durable state lives: an SQLite file (``Store``) or a schema of a shared
/// PostgreSQL database (`PostgresBookStore`, for a fleet of nodes serving the same book).
///
/// Writes run one at a time in one transaction each; `afterCommit` runs before the next
/// write starts, so the engine publishes books in commit order.
public protocol BookStore: Sendable {
    /// Runs `body` in one write transaction; commits if it returns, rolls back if it throws,
    /// then runs `afterCommit` before any other write.
    func write<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T
    /// Runs `body` on a consistent view of the last commit.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) throws -> T) async throws -> T
    /// Runs `body` on a consistent view, synchronously (start-up loading).
    func readNow<T>(_ body: (any SQLExecutor) throws -> T) throws -> T
    /// Reads and write transactions run since the store opened.
    var operations: Int { get }
    /// The SQLite write-ahead log's size in bytes (0 for other stores).
    var walBytes: Int { get }
    /// Frees connections and caches that loading used.
    func releaseMemory()
    /// Writes a consistent SQLite copy of the book to `path`.
    func backup(to path: String) throws
    func close() throws

    /// Runs `body` in a read transaction on the writer's queue: between two writes, never
    /// during one (how a fleet node applies other nodes' changes in commit order with its
    /// own writes). `afterCommit` runs there too.
    func serially<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T
    /// Runs `body` without a transaction around it (each statement sees the latest commit):
    /// for one quick statement.
    func peek<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) throws -> T) async throws -> T
    /// Returns when another node may have changed the book, or after `interval`: false when
    /// only this node's own writes were announced meanwhile (nothing to ask the store for),
    /// true otherwise (another node wrote, the interval ran out, notifications were
    /// interrupted).
    func waitForChange(upTo interval: Duration) async -> Bool
    /// Whether this node runs the book's clock re-evaluation (one node of a fleet does; a
    /// store of one node always).
    func holdsClockLead() -> Bool
}

extension BookStore {
    public func serially<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        try await write(body, afterCommit: afterCommit)
    }

    public func waitForChange(upTo interval: Duration) async -> Bool {
        try? await Task.sleep(for: interval)
        return true
    }

    public func holdsClockLead() -> Bool { true }

    public func peek<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) throws -> T) async throws -> T {
        try await read(body)
    }
}

extension Store: BookStore {}

/// Where a server's books are when they are not files of its data directory: the names a
/// fleet's PostgreSQL database holds (a book another node created is one of them).
public protocol BookSpace: Sendable {
    /// Every book's name.
    func names() throws -> [String]
    /// Whether book `name` exists.
    func contains(_ name: String) throws -> Bool
    /// Removes book `name` and everything in it.
    func drop(_ name: String) throws
}
