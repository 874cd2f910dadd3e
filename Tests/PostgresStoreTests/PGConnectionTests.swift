import Dispatch
import Foundation
import PostgresStore
import SegmentCore
import TestPostgres
import Synchronization
import TestThreads
import Testing

/// Each test gets its own cluster (or database): see TestPostgres.
/// Serialized: each test starts a cluster of its own, and eleven initdb runs at once on a
/// loaded 2-core machine starve everything else in the suite.
@Suite(.serialized, .ownThreads) struct PGConnectionTests {
    @Test func everySQLValueKindRoundTrips() async throws {
        try await TestPostgres.with { pg in
            let connection = try pg.connect()
            defer { connection.close() }
            try connection.execute("CREATE TABLE v(id int8 PRIMARY KEY, i int8, r float8, t text, b bytea)")
            let rows: [[SQLValue]] = [
                [.integer(1), .integer(.max), .real(0.1), .text("héllo ✓ 🚀 日本語 🇫🇷"), .blob([0, 1, 0xFF, 0])],
                [.integer(2), .integer(.min), .real(-1e308), .text(""), .blob([])],
                [.integer(3), .null, .null, .null, .null],
                [.integer(4), .integer(0), .real(.infinity), .text("'single' \"double\" \\ ? ; $$"), .blob(Array(0...255))],
            ]
            for row in rows {
                try connection.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?)", row)
            }
            #expect(try connection.query("SELECT id, i, r, t, b FROM v ORDER BY id") == rows)
            // Bound values come back as what they were sent as, NULL included.
            for row in rows {
                #expect(try connection.query("SELECT ?, ?, ?, ?, ?", row) == [row])
            }
            let fromTask = try await connection.queryAsync("SELECT t, b FROM v WHERE id = ?", [.integer(1)])
            #expect(fromTask == [[rows[0][3], rows[0][4]]])
        }
    }

    /// PostgreSQL's text cannot hold U+0000 (SQLite's can): the server refuses it, and the
    /// error carries its words.
    @Test func textWithNULIsRefusedWithTheServersMessage() async throws {
        try await TestPostgres.with { pg in
            let connection = try pg.connect()
            defer { connection.close() }
            let error = try #require(throws: SegmentError.self) { try connection.query("SELECT ?", [.text("a\u{0}b")]) }
            #expect(error.kind == .internal)
            #expect(error.message.contains("invalid byte sequence for encoding \"UTF8\": 0x00"), "\(error.message)")
            // The connection is still usable, and a NUL inside bytea is fine.
            #expect(try connection.query("SELECT ?", [.blob([0x61, 0, 0x62])]) == [[.blob([0x61, 0, 0x62])]])
        }
    }

    @Test func resultColumnTypesMapToSQLValues() async throws {
        try await TestPostgres.with { pg in
            let connection = try pg.connect()
            defer { connection.close() }
            let row = try #require(try connection.query("""
                SELECT 1::int2, 2::int4, 3::int8, 7::oid, 1.5::float4, 2.25::float8, 3.125::numeric,
                       -12345678.000001::numeric, 0.0001::numeric, 0::numeric, 'v'::varchar, 'n'::name, 'c'::char(2),
                       true, false, NULL::int8, ''::bytea, '{"a":1}'::jsonb, '[1]'::json, 'NaN'::numeric
                """).first)
            #expect(Array(row.dropLast()) == [
                .integer(1), .integer(2), .integer(3), .integer(7), .real(1.5), .real(2.25), .real(3.125),
                .real(-12345678.000001), .real(0.0001), .real(0), .text("v"), .text("n"), .text("c "),
                .integer(1), .integer(0), .null, .blob([]), .text("{\"a\": 1}"), .text("[1]"),
            ])
            #expect(row.last?.double?.isNaN == true)

            let error = try #require(throws: SegmentError.self) { try connection.query("SELECT now() AS stamp") }
            #expect(error.message.contains("\"stamp\"") && error.message.contains("cast it"), "\(error.message)")
        }
    }

    @Test func placeholdersAreTranslatedOutsideLiteralsOnly() async throws {
        try await TestPostgres.with { pg in
            let connection = try pg.connect()
            defer { connection.close() }
            let sql = "SELECT ?::int8 AS \"what?\", '?' AS q, 'it''s ?' AS r, E'\\' ?' AS e, $$ ? $$ AS d, ? /* ? */ AS x -- ?\n"
            #expect(try connection.query(sql, [.integer(5), .text("x")]) == [
                [.integer(5), .text("?"), .text("it's ?"), .text("' ?"), .text(" ? "), .text("x")]
            ])
            // Several statements, the arguments consumed in order.
            try connection.execute("CREATE TABLE m(x int8); INSERT INTO m VALUES (?); INSERT INTO m VALUES (?), (?);", [.integer(1), .integer(2), .integer(3)])
            #expect(try connection.query("SELECT sum(x)::int8 FROM m") == [[.integer(6)]])

            let count = try #require(throws: SegmentError.self) { try connection.execute("SELECT ?, '?'", []) }
            #expect(count.message.contains("1 ? placeholders but 0 arguments"), "\(count.message)")
            let syntax = try #require(throws: SegmentError.self) { try connection.execute("SELEC 1", []) }
            #expect(syntax.kind == .internal)
            #expect(syntax.message.contains("syntax error at or near \"SELEC\"") && syntax.message.contains("42601"), "\(syntax.message)")
        }
    }

    @Test func transactionsCommitAndRollBack() async throws {
        struct Boom: Error {}
        try await TestPostgres.with { pg in
            let connection = try pg.connect()
            defer { connection.close() }
            try connection.execute("CREATE TABLE t(id int8 PRIMARY KEY)")
            func ids() throws -> [[SQLValue]] { try connection.query("SELECT id FROM t ORDER BY id") }

            let value = try connection.transaction { sql in
                try sql.execute("INSERT INTO t VALUES (?)", [.integer(1)])
                return 42
            }
            #expect(value == 42)
            #expect(try ids() == [[.integer(1)]])

            #expect(throws: Boom.self) {
                try connection.transaction { sql in
                    try sql.execute("INSERT INTO t VALUES (?)", [.integer(2)])
                    throw Boom()
                }
            }
            #expect(try ids() == [[.integer(1)]])

            // A server error rolls back the whole transaction and says why.
            let duplicate = try #require(throws: SegmentError.self) {
                try connection.transaction { sql in
                    try sql.execute("INSERT INTO t VALUES (?)", [.integer(3)])
                    try sql.execute("INSERT INTO t VALUES (?)", [.integer(1)])
                }
            }
            #expect(duplicate.message.contains("duplicate key value violates unique constraint \"t_pkey\"") && duplicate.message.contains("23505"), "\(duplicate.message)")
            #expect(try ids() == [[.integer(1)]])

            // A failed statement whose error the body swallowed (or never saw: statements whose
            // rows nobody reads are sent without waiting) fails the transaction with its own
            // error; nothing of it is committed.
            let swallowed = try #require(throws: SegmentError.self) {
                try connection.transaction { sql in
                    try sql.execute("INSERT INTO t VALUES (?)", [.integer(4)])
                    _ = try? sql.execute("SELECT 1 / 0", [])
                }
            }
            #expect(swallowed.message.contains("division by zero") || swallowed.message.contains("instead of committing"), "\(swallowed.message)")
            #expect(try ids() == [[.integer(1)]])

            // Nested: a savepoint; the inner failure undoes only the inner work.
            try connection.transaction { sql in
                try sql.execute("INSERT INTO t VALUES (?)", [.integer(5)])
                _ = try? connection.transaction { inner in
                    try inner.execute("INSERT INTO t VALUES (?)", [.integer(6)])
                    throw Boom()
                }
            }
            #expect(try ids() == [[.integer(1)], [.integer(5)]])
            #expect(try connection.transaction { $0.lastInsertRowID } == 0)
        }
    }

    @Test func advisoryTransactionLockSerializesTwoConnections() async throws {
        try await TestPostgres.with { pg in
            let observer = try pg.connect()
            let a = try pg.connect()
            let b = try pg.connect()
            defer { [observer, a, b].forEach { $0.close() } }
            try observer.execute("CREATE TABLE counter(n int8); INSERT INTO counter VALUES (0)")

            // A read-modify-write that loses updates under READ COMMITTED unless serialized.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for connection in [a, b] {
                    group.addTask {
                        for _ in 0..<100 {
                            try connection.transaction { sql in
                                try sql.advisoryXactLock(1)
                                var n: Int64 = 0
                                try sql.forEachRow("SELECT n FROM counter", []) { n = $0[0].int64 ?? -1 }
                                try sql.execute("UPDATE counter SET n = ?", [.integer(n + 1)])
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try observer.query("SELECT n FROM counter") == [[.integer(200)]])

            // While A holds the lock, B waits for it (pg_locks shows it ungranted), and gets it
            // only after A's transaction ends.
            let events = Events()
            let release = DispatchSemaphore(value: 0)
            let (locked, lockedSignal) = AsyncStream.makeStream(of: Void.self)
            async let holder: Void = {
                try a.transaction { sql in
                    try sql.advisoryXactLock(2)
                    lockedSignal.yield()
                    release.wait()
                    events.append("a commits")
                }
            }()
            for await _ in locked { break }
            async let waiter: Void = {
                try b.transaction { sql in
                    try sql.advisoryXactLock(2)
                    events.append("b has the lock")
                }
            }()
            let waiting = await waitUntil {
                (try? observer.query("""
                    SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    """)) == [[.integer(1)]]
            }
            #expect(waiting)
            #expect(events.list.isEmpty)
            release.signal()
            try await holder
            try await waiter
            #expect(events.list == ["a commits", "b has the lock"])
        }
    }

    @Test func sessionAdvisoryLocks() async throws {
        try await TestPostgres.with { pg in
            let a = try pg.connect()
            let b = try pg.connect()
            defer { [a, b].forEach { $0.close() } }
            #expect(try a.tryAdvisoryLock(9))
            #expect(try !b.tryAdvisoryLock(9))
            #expect(try b.transaction { try !$0.tryAdvisoryXactLock(9) })
            #expect(try a.advisoryUnlock(9))
            #expect(try !a.advisoryUnlock(9))
            #expect(try b.tryAdvisoryLock(9))
            // Session locks end with the session.
            b.close()
            #expect(await waitUntil { (try? a.tryAdvisoryLock(9)) == true })
        }
    }

    @Test func listenReceivesNotifyFromAnotherConnection() async throws {
        try await TestPostgres.with { pg in
            let listening = try pg.connect()
            let notifying = try pg.connect()
            defer { [listening, notifying].forEach { $0.close() } }
            let received = Events()
            let listener = try listening.listen("segmentd_events") { received.append($0) }
            try notifying.notify("segmentd_events", "hello ✓")
            // Inside a transaction: delivered at commit, never if it rolls back.
            _ = try? notifying.transaction { sql in
                try sql.notify("segmentd_events", "rolled back")
                throw CancellationError()
            }
            try notifying.transaction { try $0.notify("segmentd_events", "committed") }
            #expect(await waitUntil { received.list.count >= 2 })
            #expect(received.list == ["hello ✓", "committed"])
            listener.stop()

            // The AsyncSequence form; other channels' notifications are not seen.
            let first = try await listening.notifications(on: "Mixed_Case") { payloads -> String? in
                try notifying.notify("mixed_case", "wrong channel")
                try notifying.notify("Mixed_Case", "right channel")
                for try await payload in payloads { return payload }
                return nil
            }
            #expect(first == "right channel")

            #expect(throws: SegmentError.self) { try listening.listen("bad\"name") { _ in } }
        }
    }

    @Test(.enabled(if: TestPostgres.ownsClusters, "SEGMENTD_TEST_POSTGRES names a server these tests cannot restart"))
    func restartFailsTheOldConnectionClearlyAndANewOneWorks() async throws {
        try await TestPostgres.with { pg in
            let old = try pg.connect()
            #expect(try old.query("SELECT 1") == [[.integer(1)]])
            let listening = try pg.connect()
            let ended = Events()
            let listener = try listening.listen("segmentd_restart", onEnd: { ended.append($0.map { "\($0.kind.rawValue): \($0.message)" } ?? "stopped") }) { _ in }

            try await pg.stopServer()
            let refused = try #require(throws: SegmentError.self) { try pg.connect() }
            #expect(refused.kind == .unavailable)
            #expect(refused.message.hasPrefix("PostgreSQL store unreachable at \(pg.url): "), "\(refused.message)")
            try await pg.startServer()

            let lost = try #require(throws: SegmentError.self) { try old.query("SELECT 1") }
            #expect(lost.kind == .unavailable)
            #expect(lost.message.hasPrefix("PostgreSQL store unreachable at \(pg.url): "), "\(lost.message)")
            #expect(old.isClosed)
            // A listener learns that its connection is gone.
            #expect(await waitUntil { !ended.list.isEmpty })
            #expect(ended.list.first?.hasPrefix("unavailable: PostgreSQL store unreachable at \(pg.url): ") == true, "\(ended.list)")
            listener.stop()
            let fresh = try pg.connect()
            defer { fresh.close() }
            #expect(try fresh.query("SELECT 1") == [[.integer(1)]])
        }
    }

    /// A writer that reconnects when its connection is lost keeps going through a restart.
    @Test(.enabled(if: TestPostgres.ownsClusters, "SEGMENTD_TEST_POSTGRES names a server these tests cannot restart"))
    func restartUnderLoad() async throws {
        try await TestPostgres.with { pg in
            let setup = try pg.connect()
            try setup.execute("CREATE TABLE w(n int8)")
            setup.close()
            let progress = Progress()
            async let writer: [SegmentError] = {
                var connection = try pg.connect()
                var failures: [SegmentError] = []
                let deadline = ContinuousClock.now + .seconds(60)
                while ContinuousClock.now < deadline && !(progress.restarted && progress.writesAfterRestart >= 20) {
                    do {
                        if connection.isClosed { connection = try pg.connect() }
                        try connection.transaction { try $0.execute("INSERT INTO w VALUES (?)", [.integer(1)]) }
                        progress.wrote()
                    } catch let error as SegmentError {
                        failures.append(error)
                        // A retry's pause while the server is down, not a measurement.
                        usleep(10_000)
                    }
                }
                connection.close()
                return failures
            }()
            #expect(await waitUntil { progress.writes >= 50 })
            try await pg.restart()
            progress.markRestarted()
            let failures = try await writer
            #expect(progress.writesAfterRestart >= 20)
            #expect(failures.allSatisfy { $0.kind == .unavailable }, "\(failures.map(\.message).prefix(3))")
            let check = try pg.connect()
            defer { check.close() }
            // A COMMIT the server carried out just before it went down may have lost its reply:
            // it counts as a failure here but its row is there.
            let rows = try #require(try check.query("SELECT count(*) FROM w").first?.first?.int64)
            #expect(rows >= Int64(progress.writes) && rows <= Int64(progress.writes + failures.count))
        }
    }

    @Test func unreachableErrorHidesThePassword() throws {
        let url = try PostgresURL("postgres://u:hunter2@/db?host=/nonexistent-segmentd-dir")
        let error = try #require(throws: SegmentError.self) { try PGConnection.connect(url) }
        #expect(error.kind == .unavailable)
        #expect(error.message.hasPrefix("PostgreSQL store unreachable at postgres://u:***@/db?host=/nonexistent-segmentd-dir: "), "\(error.message)")
        #expect(!error.message.contains("hunter2"))
    }

    /// How a plain thread waits for postgres-nio, measured: `EventLoopFuture.wait()` (what
    /// PGConnection does) against a semaphore around a `Task` running the async API. Prints
    /// the figures; asserts only that both work.
    @Test func blockingBridgeRoundTrips() async throws {
        try await TestPostgres.with { pg in
            let connection = try pg.connect()
            defer { connection.close() }
            let report = try await onPlainThread { () throws -> String in
                let count = 2_000
                func viaWait() throws -> Duration {
                    let start = ContinuousClock.now
                    for _ in 0..<count {
                        guard try connection.query("SELECT 1") == [[.integer(1)]] else { throw TestPostgresError("wrong answer") }
                    }
                    return .now - start
                }
                func viaTask() throws -> Duration {
                    let start = ContinuousClock.now
                    for _ in 0..<count {
                        let semaphore = DispatchSemaphore(value: 0)
                        let box = ResultBox()
                        Task {
                            do { box.rows = try await connection.queryAsync("SELECT 1") } catch {}
                            semaphore.signal()
                        }
                        semaphore.wait()
                        guard box.rows == [[.integer(1)]] else { throw TestPostgresError("wrong answer") }
                    }
                    return .now - start
                }
                _ = try (viaWait(), viaTask())  // warm-up
                var waits: [Duration] = [], tasks: [Duration] = []
                for _ in 0..<2 {
                    waits.append(try viaWait())
                    tasks.append(try viaTask())
                }
                func milliseconds(_ d: Duration) -> Int { Int((d / .milliseconds(1)).rounded()) }
                return "\(count) × SELECT 1 from a plain thread, ms per run: EventLoopFuture.wait() \(waits.map(milliseconds)), semaphore around Task \(tasks.map(milliseconds))"
            }
            print("PostgresStore blocking bridge: \(report)")
        }
    }
}

/// Runs `body` on a new thread that belongs to neither Swift concurrency nor NIO, like the
/// engine's writer.
private func onPlainThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

private final class ResultBox: @unchecked Sendable {
    var rows: [[SQLValue]]?
}

private final class Events: Sendable {
    private let items = Mutex<[String]>([])
    func append(_ item: String) { items.withLock { $0.append(item) } }
    var list: [String] { items.withLock { $0 } }
}

private final class Progress: Sendable {
    private let state = Mutex<(writes: Int, restartedAt: Int?)>((0, nil))
    func wrote() { state.withLock { $0.writes += 1 } }
    func markRestarted() { state.withLock { $0.restartedAt = $0.writes } }
    var writes: Int { state.withLock { $0.writes } }
    var restarted: Bool { state.withLock { $0.restartedAt != nil } }
    var writesAfterRestart: Int {
        state.withLock { state in state.restartedAt.map { state.writes - $0 } ?? 0 }
    }
}
