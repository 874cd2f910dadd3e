#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO
import SegmentCore
import Synchronization

/// One PostgreSQL connection with a synchronous API, for the engine's write closures, which
/// run on plain threads and call `SQLExecutor` synchronously.
///
/// Each synchronous call sends its statement with postgres-nio's EventLoopFuture API and
/// blocks the calling thread in `wait()` (no slower than a semaphore around a `Task`, and
/// simpler: see `blockingBridgeRoundTrips` in PostgresStoreTests). It must not be called on an
/// event-loop thread; it throws there rather than deadlock. The `…Async` variants are for
/// async code.
///
/// Once the connection is closed (the server restarted, the network failed) every call throws
/// an `.unavailable` error naming the URL; open a new connection. (postgres-nio itself would
/// leave a query sent on a closed connection waiting forever: it writes it to the channel
/// without a promise, so the write's failure reaches no one. Queries here are therefore
/// tracked, and the close fails those still waiting.)
///
/// SQL is SQLite-style: `?` placeholders, several statements separated by `;` (see
/// ``PGSQL``). Arguments are bound, never spliced.
///
/// ```swift
/// let pg = try PGConnection.connect(PostgresURL("postgres://segmentd@/segments?host=/run/postgresql"))
/// try pg.transaction { sql in
///     try sql.advisoryXactLock(42)
///     try sql.execute("INSERT INTO contacts(id, email) VALUES (?, ?)", [.integer(7), .text("a@b.c")])
/// }
/// ```
///
/// Synchronous calls from several threads are serialized, and a ``transaction(_:)`` holds the
/// connection for its whole body (the same thread may nest: a savepoint). The async variants
/// and listeners do not take part in that ordering.
public final class PGConnection: Sendable {
    public let url: PostgresURL
    let connection: PostgresConnection
    let logger: Logger
    private let gate = TransactionGate()
    private let pending = NIOLockedValueBox(PendingQueries())

    private static let nextID = Atomic<Int>(1)

    private init(url: PostgresURL, connection: PostgresConnection, logger: Logger) {
        self.url = url
        self.connection = connection
        self.logger = logger
        connection.closeFuture.whenComplete { [pending] _ in
            let waiting = pending.withLockedValue { state in
                state.closed = true
                defer { state.promises = [:] }
                return Array(state.promises.values)
            }
            for promise in waiting { promise.fail(PGErrors.unreachable(url, "the connection was closed")) }
        }
    }

    /// postgres-nio asserts that a connection is closed before it is freed: the close
    /// callback keeps it until then.
    deinit {
        let connection = connection
        connection.close().whenComplete { _ in _ = connection }
    }

    /// Opens a connection, blocking the calling thread; a failure is an `.unavailable`
    /// `SegmentError` that names the URL (without its password).
    public static func connect(
        _ url: PostgresURL, logger: Logger = Logger(label: "segmentd.postgres"),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws -> PGConnection {
        try refuseOnEventLoop()
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let future = PostgresConnection.connect(on: eventLoopGroup.any(), configuration: url.configuration, id: id, logger: logger)
        do {
            return PGConnection(url: url, connection: try future.wait(), logger: logger)
        } catch {
            throw PGErrors.connectFailed(error, url: url)
        }
    }

    public static func connectAsync(
        _ url: PostgresURL, logger: Logger = Logger(label: "segmentd.postgres"),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> PGConnection {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        do {
            let connection = try await PostgresConnection.connect(on: eventLoopGroup.any(), configuration: url.configuration, id: id, logger: logger)
            return PGConnection(url: url, connection: connection, logger: logger)
        } catch {
            throw PGErrors.connectFailed(error, url: url)
        }
    }

    public var isClosed: Bool { connection.isClosed }

    /// Closes the connection, waiting for it unless called on an event loop (which must not
    /// wait on itself).
    public func close() {
        let closing: EventLoopFuture<Void> = connection.close()
        guard MultiThreadedEventLoopGroup.currentEventLoop == nil else { return }
        _ = try? closing.wait()
    }

    public func closeAsync() async {
        try? await connection.close()
    }

    // MARK: Statements

    /// Runs each statement of `sql`, consuming `arguments` in placeholder order; rows are
    /// discarded.
    public func execute(_ sql: String, _ arguments: [SQLValue] = []) throws {
        let statements = PGSQL.statements(sql)
        try checkCount(statements, arguments)
        try gate.withLock {
            var rest = arguments[...]
            for statement in statements {
                let query = query(statement, rest.prefix(statement.parameterCount))
                if gate.pipelining {
                    try Self.refuseOnEventLoop()
                    gate.deferred.append(send(query))
                } else {
                    _ = try wait(query)
                }
                rest = rest.dropFirst(statement.parameterCount)
            }
        }
    }

    /// Waits for the statements sent without waiting; throws the first one's error.
    private func settleDeferred() throws {
        let waiting = gate.deferred
        gate.deferred = []
        var first: (any Error)?
        for future in waiting {
            do {
                _ = try future.wait()
            } catch {
                if first == nil { first = PGErrors.map(error, url: url) }
            }
        }
        if let first { throw first }
    }

    /// The rows of one statement.
    public func query(_ sql: String, _ arguments: [SQLValue] = []) throws -> [[SQLValue]] {
        var rows: [[SQLValue]] = []
        try forEachRow(sql, arguments) { rows.append($0) }
        return rows
    }

    /// Calls `body` with each row of one statement. The rows are all received before the
    /// first call (postgres-nio delivers them to the event loop, which must not wait for this
    /// thread); keep huge scans to ``queryAsync(_:_:)`` or paged queries.
    public func forEachRow(_ sql: String, _ arguments: [SQLValue] = [], _ body: ([SQLValue]) throws -> Void) throws {
        let statement = try single(sql, arguments)
        let result = try gate.withLock { try wait(query(statement, arguments[...])) }
        for row in result.rows {
            try body(try row.sqlValues)
        }
    }

    public func executeAsync(_ sql: String, _ arguments: [SQLValue] = []) async throws {
        let statements = PGSQL.statements(sql)
        try checkCount(statements, arguments)
        var rest = arguments[...]
        for statement in statements {
            do {
                _ = try await send(query(statement, rest.prefix(statement.parameterCount))).get()
            } catch {
                throw PGErrors.map(error, url: url)
            }
            rest = rest.dropFirst(statement.parameterCount)
        }
    }

    public func queryAsync(_ sql: String, _ arguments: [SQLValue] = []) async throws -> [[SQLValue]] {
        let statement = try single(sql, arguments)
        do {
            return try await send(query(statement, arguments[...])).get().rows.map { try $0.sqlValues }
        } catch {
            throw PGErrors.map(error, url: url)
        }
    }

    // MARK: Transactions and locks

    /// Runs `body` between BEGIN and COMMIT, holding the connection; any error thrown in
    /// `body`, or by COMMIT, rolls back and is rethrown. Nested on the same thread, it is a
    /// savepoint. A transaction in which a statement failed (its error caught in `body`) cannot
    /// commit: PostgreSQL answers COMMIT with ROLLBACK, and this throws.
    public func transaction<T>(_ body: (PGExecutor) throws -> T) throws -> T {
        try gate.withLock {
            let depth = gate.depth
            let savepoint = "segmentd_savepoint_\(depth)"
            if depth == 0 { gate.pipelining = true }
            defer {
                if depth == 0 {
                    gate.pipelining = false
                    gate.deferred = []
                }
            }
            // READ COMMITTED whatever the role's default: a write's reads after the book's
            // lock must see what committed before it was granted (reads set their own level).
            try execute(depth == 0 ? "BEGIN ISOLATION LEVEL READ COMMITTED" : "SAVEPOINT \(savepoint)")
            gate.depth += 1
            defer { gate.depth -= 1 }
            do {
                let value = try body(PGExecutor(connection: self))
                if depth == 0 {
                    try settleDeferred()
                    gate.pipelining = false
                    let tag = try wait(PostgresQuery(unsafeSQL: "COMMIT")).metadata.command
                    guard tag == "COMMIT" else {
                        throw SegmentError(.internal, "PostgreSQL rolled the transaction back instead of committing it (\(tag)): a statement in it had failed")
                    }
                } else {
                    try execute("RELEASE SAVEPOINT \(savepoint)")
                }
                return value
            } catch {
                var error = error
                if depth == 0 {
                    // A statement sent without waiting may have failed first: that is the cause.
                    do { try settleDeferred() } catch let first { error = first }
                    gate.pipelining = false
                }
                try? execute(depth == 0 ? "ROLLBACK" : "ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)")
                throw error
            }
        }
    }

    /// `pg_try_advisory_lock`: a session-level lock, held until ``advisoryUnlock(_:)`` or the
    /// connection ends; false when another session holds it.
    public func tryAdvisoryLock(_ key: Int64) throws -> Bool {
        try query("SELECT pg_try_advisory_lock(?)", [.integer(key)]).first?.first == .integer(1)
    }

    /// `pg_advisory_unlock`: false when this session did not hold the lock.
    public func advisoryUnlock(_ key: Int64) throws -> Bool {
        try query("SELECT pg_advisory_unlock(?)", [.integer(key)]).first?.first == .integer(1)
    }

    /// `pg_notify(channel, payload)`, outside any transaction of this thread: delivered at once.
    public func notify(_ channel: String, _ payload: String) throws {
        try execute("SELECT pg_notify(?, ?)", [.text(channel), .text(payload)])
    }

    // MARK: Internals

    /// The whole round trip of one statement, blocking this (non-event-loop) thread.
    func wait(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try Self.refuseOnEventLoop()
        do {
            let result = send(query)
            // Statements sent before it, unanswered yet: their errors come first.
            if gate.pipelining && !gate.deferred.isEmpty {
                do {
                    try settleDeferred()
                } catch {
                    _ = try? result.wait()
                    throw error
                }
            }
            return try result.wait()
        } catch {
            throw PGErrors.map(error, url: url)
        }
    }

    /// Sends one statement; the future fails when the connection closes before the answer.
    private func send(_ query: PostgresQuery) -> EventLoopFuture<PostgresQueryResult> {
        let promise = connection.eventLoop.makePromise(of: PostgresQueryResult.self)
        let id = pending.withLockedValue { state -> Int? in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.promises[state.nextID] = promise
            return state.nextID
        }
        guard let id else {
            promise.fail(PGErrors.unreachable(url, "the connection is closed"))
            return promise.futureResult
        }
        connection.query(query, logger: logger).whenComplete { [pending] result in
            // Whoever takes the promise out completes it: this answer, or the close.
            if pending.withLockedValue({ $0.promises.removeValue(forKey: id) }) != nil {
                promise.completeWith(result)
            }
        }
        return promise.futureResult
    }

    private func query(_ statement: PGSQL.Statement, _ arguments: ArraySlice<SQLValue>) -> PostgresQuery {
        var binds = PostgresBindings(capacity: arguments.count)
        for argument in arguments { binds.append(argument) }
        return PostgresQuery(unsafeSQL: statement.sql, binds: binds)
    }

    private func single(_ sql: String, _ arguments: [SQLValue]) throws -> PGSQL.Statement {
        let statements = PGSQL.statements(sql)
        guard statements.count == 1 else {
            throw SegmentError(.internal, "a query takes one SQL statement, got \(statements.count): \(sql.prefix(200))")
        }
        try checkCount(statements, arguments)
        return statements[0]
    }

    private func checkCount(_ statements: [PGSQL.Statement], _ arguments: [SQLValue]) throws {
        let placeholders = statements.reduce(0) { $0 + $1.parameterCount }
        guard placeholders == arguments.count else {
            let sql = statements.map(\.sql).joined(separator: "; ")
            throw SegmentError(.internal, "SQL has \(placeholders) ? placeholders but \(arguments.count) arguments were given: \(sql.prefix(200))")
        }
    }

    private static func refuseOnEventLoop() throws {
        if MultiThreadedEventLoopGroup.currentEventLoop != nil {
            throw SegmentError(.internal, "a synchronous PostgreSQL call on an event-loop thread would deadlock: use the async variants there")
        }
    }
}

extension PostgresURL {
    var configuration: PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: .disable)
        case .unixSocket:
            configuration = .init(unixSocketPath: socketPath!, username: user, password: password, database: database)
        }
        configuration.options.additionalStartupParameters = [("application_name", "segmentd")]
        return configuration
    }
}

/// The queries sent and not yet answered, for the close to fail.
private struct PendingQueries {
    var closed = false
    var nextID = 0
    var promises: [Int: EventLoopPromise<PostgresQueryResult>] = [:]
}
