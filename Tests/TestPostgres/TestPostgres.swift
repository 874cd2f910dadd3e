import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PostgresStore
import SegmentCore
import Subprocess
import Synchronization
import SystemPackage

/// A PostgreSQL server for one test: a throwaway cluster of its own (initdb in a fresh
/// directory under /tmp, a Unix socket in that directory, no TCP), or, when
/// `SEGMENTD_TEST_POSTGRES=postgres://…` names a server, a uniquely named database on it.
///
/// ```swift
/// try await TestPostgres.with { pg in
///     let connection = try pg.connect()
///     …
///     try await pg.restart()
/// }
/// ```
///
/// As root the cluster runs as the `postgres` user (initdb and postgres refuse root): the
/// directory is chowned to it and each program is run through `setpriv --reuid --regid`.
/// (Not swift-subprocess's `PlatformOptions.userID`: in 1.0.2 that path clones the
/// multi-threaded test process and calls `setgroups` in the child, where glibc can wait
/// forever for a thread that was being created at the time of the clone: seen hanging.)
///
/// The server is started and stopped with `pg_ctl`, run through swift-subprocess: pg_ctl's
/// `-w -t` is the bounded wait for "accepting connections", and since pg_ctl returns once the
/// server runs, no long-lived child has to be held and killed. A watchdog shell per cluster
/// stops the server (SIGQUIT) and removes the directory if the test process dies first.
public final class TestPostgres: Sendable {
    /// The test's database.
    public let url: PostgresURL
    private let cluster: Cluster?
    private let external: (admin: PostgresURL, database: String)?

    /// Whether the tests start their own clusters (and so can stop and restart them).
    public static var ownsClusters: Bool { externalURL == nil }

    private static var externalURL: String? {
        ProcessInfo.processInfo.environment["SEGMENTD_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }
    }

    private init(url: PostgresURL, cluster: Cluster?, external: (admin: PostgresURL, database: String)?) {
        self.url = url
        self.cluster = cluster
        self.external = external
    }

    /// Starts a server (or creates a database), runs `body`, and always cleans up.
    public static func with<T>(_ body: (TestPostgres) async throws -> T) async throws -> T {
        let postgres = try await start()
        do {
            let value = try await body(postgres)
            await postgres.stop()
            return value
        } catch {
            await postgres.stop()
            throw error
        }
    }

    public static func start() async throws -> TestPostgres {
        if let externalURL {
            let admin = try PostgresURL(externalURL)
            let database = "segmentd_test_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
            let connection = try await PGConnection.connectAsync(admin)
            try await connection.executeAsync("CREATE DATABASE \(database)")
            await connection.closeAsync()
            return TestPostgres(url: admin.with(database: database), cluster: nil, external: (admin, database))
        }
        let cluster = try await Cluster.create()
        do {
            let connection = try await PGConnection.connectAsync(cluster.maintenanceURL)
            try await connection.executeAsync("CREATE DATABASE segmentd_test")
            await connection.closeAsync()
        } catch {
            await cluster.destroy()
            throw error
        }
        return TestPostgres(url: cluster.maintenanceURL.with(database: "segmentd_test"), cluster: cluster, external: nil)
    }

    public func connect() throws -> PGConnection { try PGConnection.connect(url) }

    /// What every other session of the server is doing and waiting for (`pg_stat_activity`,
    /// with the locks it waits on): for a test's message when something hung.
    public func activity() -> String {
        guard let pg = try? connect() else { return "(PostgreSQL unreachable)" }
        defer { pg.close() }
        let rows = (try? pg.query("""
            SELECT a.pid, a.state, COALESCE(a.wait_event_type, ''), COALESCE(a.wait_event, ''),
                   COALESCE((SELECT string_agg(l.locktype || ' ' || COALESCE(l.objid::text, ''), ', ') FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), ''),
                   left(a.query, 160)
            FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
            """)) ?? []
        return rows.map { row in row.map { $0.string ?? $0.int64.map(String.init) ?? "" }.joined(separator: " | ") }.joined(separator: "\n")
    }

    /// `pg_ctl stop -m fast`: sessions are ended, the data directory stays.
    public func stopServer() async throws { try await ownCluster().stopServer() }

    /// `pg_ctl start` on the same data directory, socket and port.
    public func startServer() async throws { try await ownCluster().startServer() }

    public func restart() async throws {
        try await stopServer()
        try await startServer()
    }

    /// Stops the cluster and removes its directory, or drops the test's database.
    public func stop() async {
        if let cluster { await cluster.destroy() }
        if let external, let connection = try? await PGConnection.connectAsync(external.admin) {
            try? await connection.executeAsync("DROP DATABASE IF EXISTS \(external.database) WITH (FORCE)")
            await connection.closeAsync()
        }
    }

    /// One server for the whole test process, started on first use: what suites that need
    /// a PostgreSQL database but not its restarts share (each test takes a schema of its
    /// own). Its watchdog stops it once this process has ended, however it ends.
    public static func shared() throws -> TestPostgres {
        try sharedServer.withLock { server in
            if let server { return server }
            let started = Mutex<Result<TestPostgres, any Error>?>(nil)
            let done = DispatchSemaphore(value: 0)
            Task {
                let result: Result<TestPostgres, any Error>
                do {
                    result = .success(try await start())
                } catch {
                    result = .failure(error)
                }
                started.withLock { $0 = result }
                done.signal()
            }
            done.wait()
            let postgres = try started.withLock { $0! }.get()
            server = postgres
            return postgres
        }
    }

    private static let sharedServer = Mutex<TestPostgres?>(nil)

    private func ownCluster() throws -> Cluster {
        guard let cluster else { throw TestPostgresError("SEGMENTD_TEST_POSTGRES names a server these tests do not control") }
        return cluster
    }
}

public struct TestPostgresError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One initdb'd cluster in `/tmp/segmentd-pg-XXXXXX`: `data/`, `server.log`, and the socket
/// `.s.PGSQL.5432` beside them (every cluster may use port 5432: each has its own socket
/// directory and listens on no TCP address).
private struct Cluster: Sendable {
    let root: String
    let bin: String
    /// The postgres user's uid and gid when the tests run as root.
    let owner: (uid: uid_t, gid: gid_t)?

    var data: String { root + "/data" }
    var log: String { root + "/server.log" }
    var maintenanceURL: PostgresURL {
        PostgresURL(user: "postgres", database: "postgres", endpoint: .unixSocket(directory: root, port: 5432))
    }

    static func create() async throws -> Cluster {
        let bin = try binDirectory()
        var template = Array("/tmp/segmentd-pg-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestPostgresError("mkdtemp: \(String(cString: strerror(errno)))") }
        let root = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var owner: (uid: uid_t, gid: gid_t)?
        if getuid() == 0 {
            guard let user = getpwnam("postgres") else {
                throw TestPostgresError("running as root, the test cluster needs a 'postgres' user to run initdb and postgres as")
            }
            owner = (user.pointee.pw_uid, user.pointee.pw_gid)
            guard chown(root, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
                throw TestPostgresError("chown \(root) to postgres: \(String(cString: strerror(errno)))")
            }
        }
        let cluster = Cluster(root: root, bin: bin, owner: owner)
        do {
            try await cluster.tool("initdb", ["-D", cluster.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            let settings = """

                # segmentd tests: a Unix socket in the cluster's own directory, no TCP, no durability.
                listen_addresses = ''
                unix_socket_directories = '\(root)'
                port = 5432
                fsync = off
                synchronous_commit = off
                full_page_writes = off
                shared_buffers = 16MB
                max_connections = 400

                """
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: cluster.data + "/postgresql.conf"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(settings.utf8))
            try handle.close()
            try await cluster.startServer()
            try await cluster.startWatchdog()
            return cluster
        } catch {
            await cluster.destroy()
            throw error
        }
    }

    func startServer() async throws {
        do {
            try await tool("pg_ctl", ["-D", data, "-l", log, "-w", "-t", "60", "-s", "start"])
        } catch {
            let serverLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? "(no server log)"
            throw TestPostgresError("PostgreSQL did not start in \(root): \(error)\n--- server log ---\n\(serverLog.suffix(4000))")
        }
    }

    func stopServer() async throws {
        try await tool("pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", "60", "-s", "stop"])
    }

    /// Stops the server if it runs (SIGKILL if pg_ctl cannot) and removes the directory.
    func destroy() async {
        if FileManager.default.fileExists(atPath: data + "/postmaster.pid") {
            do {
                try await stopServer()
            } catch {
                if let pidFile = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
                    let pid = pidFile.split(separator: "\n").first.flatMap({ Int32($0) }), pid > 0
                {
                    kill(pid, SIGKILL)
                }
            }
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Runs one of PostgreSQL's programs to completion (as the postgres user when root);
    /// throws with its output when it fails.
    @discardableResult
    func tool(_ name: String, _ arguments: [String]) async throws -> String {
        var executable = bin + "/" + name
        var arguments = arguments
        if let owner {
            arguments = ["--reuid=\(owner.uid)", "--regid=\(owner.gid)", "--clear-groups", "--", executable] + arguments
            executable = "/usr/bin/setpriv"
        }
        let result = try await run(
            .path(FilePath(executable)), arguments: Arguments(arguments),
            environment: .inherit.updating(["LC_ALL": "C", "LANG": "C"]), workingDirectory: FilePath(root),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        let output = result.standardOutput + result.standardError
        guard result.terminationStatus.isSuccess else {
            throw TestPostgresError("\(name) \(arguments.joined(separator: " ")) ended with \(result.terminationStatus): \(output)")
        }
        return output
    }

    /// A shell in a session of its own that, once this test process is gone while the
    /// directory is still there, shuts the server down at once (SIGQUIT) and removes the directory. It ends
    /// by itself when `destroy()` has removed the directory.
    func startWatchdog() async throws {
        let script = """
            while [ -d /proc/\(getpid()) ] && [ -d '\(root)' ]; do sleep 1; done
            pid=$(head -n 1 '\(data)/postmaster.pid' 2>/dev/null)
            if [ -n "$pid" ]; then kill -QUIT "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; fi
            rm -rf '\(root)'
            """
        // setsid -f: its own session, so that what ends the test run's process group (a
        // timeout, ^C) does not end the watchdog too.
        _ = try await run(.path("/usr/bin/setsid"), arguments: ["-f", "/bin/sh", "-c", script], output: .discarded, error: .discarded)
    }

    /// `SEGMENTD_PG_BIN`, else Debian's /usr/lib/postgresql/15/bin, else the newest version
    /// there.
    private static func binDirectory() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        var candidates = [environment["SEGMENTD_PG_BIN"], "/usr/lib/postgresql/15/bin"].compactMap { $0 }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        candidates += versions.compactMap(Int.init).sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin" }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }) else {
            throw TestPostgresError(
                "no PostgreSQL server programs (initdb) in \(candidates): install them (Debian: apt-get install postgresql), set SEGMENTD_PG_BIN, or point SEGMENTD_TEST_POSTGRES at a server")
        }
        return found
    }
}
