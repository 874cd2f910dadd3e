import Dispatch
import Foundation
import Logging
import SegmentCore
import SegmentStore
import Synchronization

/// One book in a PostgreSQL database shared by a fleet of segmentd nodes: a schema of its own
/// (`segmentd_NAME`), the same tables as an SQLite book plus the change log.
///
/// Every write takes the book's transaction-scoped advisory lock first, so writes from all
/// nodes are serialized per book; the engine then catches up, writes, appends one change
/// record, and this store sends a NOTIFY on the book's channel, delivered when it commits.
/// Writes and catch-ups run one at a time on a queue of their own (a plain thread: the
/// connection's synchronous calls must not run on an event loop), so this node publishes
/// states in commit order. A lost connection is made again on the next call; while the
/// server is unreachable, calls fail at once with an `unavailable` error naming it.
///
/// ```swift
/// let store = try PostgresBookStore(url: PostgresURL("postgres://segmentd@/segments?host=/run/postgresql"),
///                                   book: "default", providers: registry.providers)
/// ```
public final class PostgresBookStore: BookStore {
    public let url: PostgresURL
    /// The book's schema, also its NOTIFY channel.
    public let schema: String
    /// The book's advisory lock key (writes), and its clock leader's (`clockLock`).
    public let lockKey: Int64
    public var clockLockKey: Int64 { lockKey ^ 0x636C_6F63_6B00 }
    let logger: Logger
    private let queue: DispatchQueue
    private let writer = ConnectionSlot()
    /// Reads spread over a few connections (loading reads every dimension's documents at
    /// once), made when first needed.
    private let readers = (0..<3).map { _ in ConnectionSlot() }
    private let nextReader = Atomic<Int>(0)
    private var reader: ConnectionSlot { readers[nextReader.wrappingAdd(1, ordering: .relaxed).oldValue % readers.count] }
    /// The session that holds the clock lock while this node is the book's clock leader.
    private let leader = ConnectionSlot()
    private let listenTask = Mutex<Task<Void, Never>?>(nil)
    private let listenerConnection = ConnectionSlot()
    private let wake = ChangeSignal()
    private let operationCount = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)
    /// This store's name in its notifications' payload (another store of the same book, in
    /// this process or another, has its own).
    private let nodeID = UUID().uuidString

    public var operations: Int { operationCount.load(ordering: .relaxed) }
    public var walBytes: Int { 0 }

    /// Connects, creates the book's schema if needed and applies the migrations it lacks (under
    /// the book's lock, so nodes starting together migrate once), and starts listening.
    ///
    /// `listens: false` leaves notifications out: the node learns of changes by its periodic
    /// catch-up only (what a node sees when notifications are lost; tests use it).
    public init(
        url: PostgresURL, book: String, providers: [any DimensionProvider], listens: Bool = true, logger: Logger = Logger(label: "segmentd.postgres")
    ) throws {
        self.url = url
        self.schema = Self.schema(of: book)
        self.lockKey = Self.lockKey(of: schema)
        self.logger = logger
        self.listens = listens
        queue = DispatchQueue(label: "segmentd.postgres.\(book)")
        let pg = try connection(for: writer)
        try migrate(pg, migrations: PostgresSchema.migrations(for: providers), book: book)
        if listens { startListening() }
    }

    private let listens: Bool

    /// `segmentd_` and the book's name (book names are `[a-z0-9_-]`, quoted where used);
    /// names too long for PostgreSQL's 63-byte identifiers keep a prefix and a hash.
    public static func schema(of book: String) -> String {
        let plain = "segmentd_" + book
        guard plain.utf8.count > 63 else { return plain }
        return "segmentd_" + book.prefix(36) + "_" + String(UInt64(bitPattern: stableHash(book)), radix: 16)
    }

    static func lockKey(of schema: String) -> Int64 { stableHash("segmentd.book." + schema) }

    /// FNV-1a: the same on every node and every run (Swift's `hashValue` is seeded per process).
    static func stableHash(_ text: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }

    var quotedSchema: String { "\"" + schema + "\"" }

    /// The connection in `slot`, made (with the book's schema first on its search path) when
    /// there is none or the last one was lost.
    private func connection(for slot: ConnectionSlot) throws -> PGConnection {
        if let pg = slot.current, !pg.isClosed { return pg }
        guard !closed.load(ordering: .relaxed) else { throw SegmentError(.unavailable, "the book's store is closed") }
        let pg = try PGConnection.connect(url, logger: logger)
        do {
            // The schema is made by the migration (under the registry's lock).
            try pg.execute("SET search_path TO \(quotedSchema)")
        } catch {
            pg.close()
            throw error
        }
        slot.current = pg
        return pg
    }

    /// Runs `work` with `slot`'s connection; a lost connection is dropped, so the next call
    /// connects again.
    private func using<T>(_ slot: ConnectionSlot, _ work: (PGConnection) throws -> T) throws -> T {
        let pg = try connection(for: slot)
        do {
            return try work(pg)
        } catch {
            if pg.isClosed || (error as? SegmentError)?.kind == .unavailable {
                slot.drop(pg)
                pg.close()
            }
            throw error
        }
    }

    private func migrate(_ pg: PGConnection, migrations: [StoreMigration], book: String) throws {
        try pg.transaction { sql in
            try sql.advisoryXactLock(lockKey)
            try PostgresBookSpace.register(book, schema: schema, sql: sql)
            try sql.execute("CREATE TABLE IF NOT EXISTS segmentd_migrations (name TEXT PRIMARY KEY)", [])
            var applied: Set<String> = []
            try sql.forEachRow("SELECT name FROM segmentd_migrations", []) { if let name = $0[0].string { applied.insert(name) } }
            let known = Set(migrations.map(\.name))
            if let unknown = applied.subtracting(known).sorted().first {
                throw SegmentError(
                    .conflict,
                    "schema \(schema) was migrated by a newer segmentd (it has migration \(unknown), which this one does not know); run that version")
            }
            for migration in migrations where !applied.contains(migration.name) {
                try sql.execute(migration.sql, [])
                try migration.convert?(sql)
                try sql.execute("INSERT INTO segmentd_migrations(name) VALUES (?)", [.text(migration.name)])
            }
        }
    }

    // MARK: BookStore

    public func write<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        try await onWriterQueue(afterCommit: afterCommit) { [self] sql in
            // The lock, and the notification the write sends when it commits (a rolled-back
            // one sends none), in one statement sent without waiting: PostgreSQL runs a
            // connection's statements in order, so each statement after it runs with the lock
            // held (a READ COMMITTED read sees what committed before it was granted), and the
            // first one whose rows are read (the engine's catch-up) waits for it. The payload
            // names this node, which has its own writes already.
            try sql.execute(PGExecutor.lockStatement(lockKey, notify: (schema, nodeID)), [])
            let result = try body(ReturningExecutor(base: sql))
            return result
        }
    }

    public func serially<T: Sendable>(
        _ body: @escaping @Sendable (any SQLExecutor) throws -> T,
        afterCommit: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        try await onWriterQueue(afterCommit: afterCommit) { sql in
            try sql.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", [])
            return try body(sql)
        }
    }

    /// One transaction on the writer's connection and queue, then `afterCommit` there too.
    private func onWriterQueue<T: Sendable>(
        afterCommit: @escaping @Sendable (T) -> Void, _ body: @escaping @Sendable (PGExecutor) throws -> T
    ) async throws -> T {
        try await onQueue { [self] in
            operationCount.add(1, ordering: .relaxed)
            let result = try using(writer) { pg in try pg.transaction(body) }
            afterCommit(result)
            return result
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) throws -> T) async throws -> T {
        operationCount.add(1, ordering: .relaxed)
        return try await WorkerThread.run { [self] in try readNow(body) }
    }

    public func readNow<T>(_ body: (any SQLExecutor) throws -> T) throws -> T {
        try using(reader) { pg in
            try pg.transaction { sql in
                try sql.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", [])
                return try body(sql)
            }
        }
    }

    public func peek<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) throws -> T) async throws -> T {
        operationCount.add(1, ordering: .relaxed)
        return try await WorkerThread.run { [self] in try using(reader) { pg in try body(PGExecutor(connection: pg)) } }
    }

    public func waitForChange(upTo interval: Duration) async -> Bool {
        await wake.wait(upTo: interval)
    }

    public func releaseMemory() {}

    public func backup(to path: String) throws {
        throw SegmentError(.invalidParams, "a PostgreSQL book is backed up with PostgreSQL's own tools (pg_dump --schema=\(schema)), not server.backup")
    }

    deinit { try? close() }

    public func close() throws {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        listenTask.withLock { $0?.cancel() }
        listenerConnection.closeAll()
        wake.signal()
        for slot in [writer, leader] + readers { slot.closeAll() }
    }

    // MARK: Clock leader

    /// Whether this node is the book's clock leader: it holds the clock lock on a session of
    /// its own, taken here when free. When the node dies its session ends and PostgreSQL frees
    /// the lock, so another node's next call takes it.
    public func holdsClockLead() -> Bool {
        if let pg = leader.current, !pg.isClosed { return true }
        leader.current = nil
        do {
            let pg = try PGConnection.connect(url, logger: logger)
            guard try pg.tryAdvisoryLock(clockLockKey) else {
                pg.close()
                return false
            }
            leader.current = pg
            return true
        } catch {
            return false
        }
    }

    /// Gives the lead up (a node shutting down hands over at once).
    public func resignClockLead() {
        leader.closeAll()
    }

    // MARK: Internals

    /// Listens on the book's channel for as long as the store is open, on a task of its own
    /// (never blocking a thread): a lost connection is made again after a second, and every
    /// (re)start wakes the follower, which catches up on what it may have missed meanwhile.
    private func startListening() {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                guard let self, !self.closed.load(ordering: .relaxed) else { return }
                do {
                    let pg = try await PGConnection.connectAsync(self.url, logger: self.logger)
                    self.listenerConnection.current = pg
                    try await pg.notifications(on: self.schema) { notifications in
                        self.wake.signal()
                        for try await payload in notifications { self.wake.signal(own: payload == self.nodeID) }
                    }
                } catch {
                    guard !Task.isCancelled else { return }
                    self.logger.debug("LISTEN ended; listening again in a second", metadata: ["error": "\(error)"])
                }
                await self.listenerConnection.takeCurrent()?.closeAsync()
                self.wake.signal()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        listenTask.withLock { $0 = task }
    }

    private func onQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// The engine's SQL on PostgreSQL, with the rowid SQLite gives an insert: an `INSERT` into a
/// table whose key is generated gets `RETURNING` its key, and `lastInsertRowID` is the
/// highest returned (one writer per book, under its lock, gets consecutive keys).
///
/// Event cursors stay gapless, as in SQLite: a sequence does not give back the numbers of a
/// rolled-back insert, so before a transaction's first event insert the sequence is set to
/// the newest cursor given (under the book's lock, nobody else draws from it).
final class ReturningExecutor: SQLExecutor {
    let base: PGExecutor
    private let last = Mutex<Int64>(0)
    private let cursorsAligned = Mutex(false)

    init(base: PGExecutor) { self.base = base }

    static let generatedKeys = ["INSERT INTO contact(": "id", "INSERT INTO segment(": "id", "INSERT INTO trigger(": "id", "INSERT INTO event(": "cursor"]

    func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        guard let key = Self.generatedKeys.first(where: { sql.hasPrefix($0.key) })?.value else {
            return try base.execute(sql, arguments)
        }
        if key == "cursor", !cursorsAligned.withLock({ $0 }) {
            try base.execute("""
                SELECT setval(pg_get_serial_sequence('event', 'cursor'), GREATEST(n, 1), n > 0) FROM (SELECT GREATEST(
                    (SELECT COALESCE(MAX(cursor), 0) FROM event),
                    (SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'events_pruned_through')) AS n) AS newest
                """, [])
            cursorsAligned.withLock { $0 = true }
        }
        var highest: Int64 = 0
        try base.forEachRow(sql + " RETURNING " + key, arguments) { row in highest = max(highest, row[0].int64 ?? 0) }
        last.withLock { $0 = highest }
    }

    func forEachRow(_ sql: String, _ arguments: [SQLValue], _ body: ([SQLValue]) throws -> Void) throws {
        try base.forEachRow(sql, arguments, body)
    }

    var lastInsertRowID: Int64 { last.withLock { $0 } }
}
