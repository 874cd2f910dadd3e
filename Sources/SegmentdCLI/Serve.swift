import ArgumentParser
import Foundation
import LineRPC
import Logging
import Metrics
import SegmentCore
import SegmentdApp
import SegmentEngine

/// `segmentd serve`: runs the server until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (defaults: books in ./segmentd-data/, socket ./segmentd.sock).")

    @Option(help: "TOML file of settings: every flag below as a key (max_connections = 2048). Flags win over SEGMENTD_* variables, which win over the file (default: $SEGMENTD_CONFIG).")
    var config: String?
    @Option(help: "Directory of the books: one SQLite database per book in DIR/books/NAME.sqlite (created if missing; default ./segmentd-data).") var dataDir: String?
    @Option(help: "Serve this SQLite file as the default book (a database of an earlier segmentd); other books stay in --data-dir.") var db: String?
    @Option(help: "Keep the books in PostgreSQL, shared by a fleet of nodes: postgres://USER[:PASSWORD]@HOST[:PORT]/DB, or postgres://USER@/DB?host=/socket/dir (better: $SEGMENTD_STORE, kept out of the process list). Default: SQLite files in --data-dir.") var store: String?
    @Option(help: "Milliseconds a read with min_version waits for this node to apply that version (default: 1000).") var readWaitMs: Int?
    @Option(help: "Milliseconds between a fleet node's checks for changes it was not notified of (default: 1000).") var catchUpMs: Int?
    @Option(help: "Unix socket path (default: segmentd.sock).") var socket: String?
    @Option(help: "Unix socket file mode, octal (default: 600).") var socketMode: String?
    @Option(help: "Group of the Unix socket file (name or id); use with --socket-mode 660.") var socketGroup: String?
    @Option(help: "Directory segments.export may write files to, created if missing (default: exports).") var exportDir: String?
    @Option(help: "Also listen on TCP HOST:PORT (e.g. 127.0.0.1:7070); needs --token or a --token-file.") var tcp: String?
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (PORT alone: loopback, 127.0.0.1). Off by default.") var metrics: String?
    @Option(help: "Token TCP clients must send in rpc.hello (better: $SEGMENTD_TOKEN, kept out of the process list); it may use and administer every book.") var token: String?
    @Option(help: "File of TCP tokens, one per line: TOKEN read|write|admin BOOK,BOOK|* (re-read on SIGHUP).") var tokenFile: String?
    @Option(help: "Seconds a request waits for its book to finish loading before -32007 (default: 30).") var bookLoadWait: Double?
    @Option(help: "Time zone for dates without a zone, an IANA name (default: UTC).") var timeZone: String?
    @Option(help: "Seconds in-flight requests get to finish on SIGTERM (default: 10).") var drainSeconds: Int?
    @Option(help: "Seconds between re-evaluations of time-dependent triggers, 0.1 or more (default: 60).") var reevaluateEvery: Double?
    @Option(help: "Days trigger events are kept (default: 30).") var eventRetentionDays: Double?
    @Option(help: "Most trigger events kept (default: 1000000).") var eventRetentionCount: Int?
    @Option(help: "Seconds an events.subscribe client may take nothing off its connection while an event waits before its subscription ends with -32004 naming the cursor to resume after. Reading is seen in ~100 KB steps: raise it for consumers slower than ~2 KB/s. Accepted up to 86400, but useful only below the connection stall limit, idle_timeout_ms (a warning says so). Default: 60.")
    var subscriberTimeout: Double?
    @Option(help: "Deprecated and ignored: subscribers read the event log at their own pace and are no longer dropped for falling behind.")
    var subscriberQueue: Int?
    @Option(help: "Freeze the clock at this ISO 8601 time (reproducible demos and docs; never in production).") var frozenClock: String?
    @Option(help: "Log level: trace, debug (a line per request), info, notice, warning, error, critical (default: info).") var logLevel: String?
    @Option(help: "Log lines as text, or json: one JSON object per line (default: text).") var logFormat: String?
    @Option(help: "Requests slower than this many milliseconds are logged at warning (0: never; streams and backups, long by design, never are). Default: 100.") var slowRequestMs: Int?
    @Option(help: "Most open connections (default: 1024).") var maxConnections: Int?
    @Option(help: "Most requests running at once on one connection (default: 32).") var maxInFlight: Int?
    @Option(help: "Most requests in one JSON-RPC batch (default: 100).") var maxBatch: Int?
    @Option(help: "Longest request line in bytes (default: 1048576).") var maxLineBytes: Int?
    @Option(help: "Milliseconds a partial line may wait for its end before the connection is closed (default: 30000).") var lineTimeoutMs: Int?
    @Option(help: "Milliseconds an idle or stalled connection is kept (default: 300000).") var idleTimeoutMs: Int?
    @Option(help: "Failed rpc.hello attempts before a TCP connection is closed (default: 5).") var maxFailedHellos: Int?

    /// The flags given, keyed as in the config file.
    var flags: [String: ServeSettings.Value] {
        var out: [String: ServeSettings.Value] = [:]
        func put(_ key: String, _ text: String?) { if let text { out[key] = .string(text) } }
        func put(_ key: String, _ n: Int?) { if let n { out[key] = .int(n) } }
        func put(_ key: String, _ x: Double?) { if let x { out[key] = .double(x) } }
        put("data_dir", dataDir); put("db", db); put("socket", socket); put("socket_mode", socketMode)
        put("socket_group", socketGroup); put("export_dir", exportDir); put("tcp", tcp); put("metrics", metrics)
        put("token", token); put("token_file", tokenFile); put("book_load_wait", bookLoadWait); put("time_zone", timeZone)
        put("drain_seconds", drainSeconds); put("reevaluate_every", reevaluateEvery); put("event_retention_days", eventRetentionDays)
        put("event_retention_count", eventRetentionCount); put("subscriber_timeout", subscriberTimeout); put("frozen_clock", frozenClock)
        put("log_level", logLevel); put("log_format", logFormat); put("slow_request_ms", slowRequestMs)
        put("max_connections", maxConnections); put("max_in_flight", maxInFlight); put("max_batch", maxBatch)
        put("max_line_bytes", maxLineBytes); put("line_timeout_ms", lineTimeoutMs); put("idle_timeout_ms", idleTimeoutMs)
        put("max_failed_hellos", maxFailedHellos); put("store", store); put("read_wait_ms", readWaitMs); put("catch_up_ms", catchUpMs)
        return out
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings: ServeSettings
        let config: AppConfiguration
        do {
            settings = try ServeSettings(file: self.config ?? environment["SEGMENTD_CONFIG"], environment: environment, flags: flags)
            config = try settings.appConfiguration()
        } catch {
            throw CommandFailure(error.message)
        }
        let level = Logger.Level(rawValue: settings.string("log_level") ?? "info") ?? .info
        let json = settings.string("log_format") == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        try Self.refuseEarlierLayout(dataDir: settings.values["data_dir"]?.source == .defaults ? nil : config.dataDirectory, db: config.databasePath)
        let app = try SegmentdApplication.build(config, registry: try Segmentd.registry())
        // What dependencies record through swift-metrics lands in the same registry.
        MetricsSystem.bootstrap(app.metrics.factory)
        for name in settings.unknownVariables {
            app.logger.warning("\(name) is not a segmentd setting and is ignored (settings: SEGMENTD_<KEY>, keys as in `segmentd config check`)")
        }
        if config.subscriberTimeout >= config.limits.idleTimeout {
            app.logger.warning("subscriber_timeout is not below the connection stall limit (idle_timeout_ms, \(config.limits.idleTimeout)): a stalled subscriber's connection is closed first, without the error naming its cursor")
        }
        if subscriberQueue != nil {
            app.logger.warning("--subscriber-queue is deprecated and ignored: subscribers read the event log at their own pace; see --subscriber-timeout")
        }
        app.logger.info("serving", metadata: [
            "socket": "\(config.socketPath)", "data-dir": "\(config.dataDirectory)", "default-book": "\(app.catalog.layout.databasePath(of: "default"))",
            "books": "\(app.catalog.names.count)", "tcp": "\(config.tcp ?? "off")", "metrics": "\(config.metrics ?? "off")",
            "config": "\(settings.file ?? "none")",
        ])
        try await app.run()
    }

    /// An earlier segmentd served `./segmentd.sqlite` by default. Started with no flags where
    /// that file is and no data directory yet, this one would start empty beside it, and the
    /// contacts would seem gone: refuse, and say the two ways on.
    static func refuseEarlierLayout(dataDir: String?, db: String?) throws {
        let manager = FileManager.default
        guard dataDir == nil, db == nil, manager.fileExists(atPath: "segmentd.sqlite"),
            !manager.fileExists(atPath: "segmentd-data/books/default.sqlite")
        else { return }
        throw CommandFailure("""
            ./segmentd.sqlite is the database of an earlier segmentd, which served it by default; \
            this one keeps books in ./segmentd-data/books/. Either serve that file as the default book: \
            segmentd serve --db segmentd.sqlite, or stop here and move it (with its -wal and -shm files, if any) \
            to ./segmentd-data/books/default.sqlite (README: Books). To start a new, empty data directory \
            beside it instead, pass --data-dir segmentd-data.
            """)
    }
}
