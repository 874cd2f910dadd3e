import ArgumentParser
import Foundation
import Logging
import Metrics
import SegmentCore
import SegmentdApp

/// `segmentd serve`: runs the server until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (defaults: books in ./segmentd-data/, socket ./segmentd.sock).")

    @Option(help: "Directory of the books: one SQLite database per book in DIR/books/NAME.sqlite (created if missing; default ./segmentd-data).") var dataDir: String?
    @Option(help: "Serve this SQLite file as the default book (a database of an earlier segmentd); other books stay in --data-dir.") var db: String?
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Unix socket file mode, octal.") var socketMode = "600"
    @Option(help: "Group of the Unix socket file (name or id); use with --socket-mode 660.") var socketGroup: String?
    @Option(help: "Directory segments.export may write files to (created if missing).") var exportDir = "exports"
    @Option(help: "Also listen on TCP HOST:PORT (e.g. 127.0.0.1:7070); needs --token or SEGMENTD_TOKEN.") var tcp: String?
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (PORT alone: loopback, 127.0.0.1). Off by default.") var metrics: String?
    @Option(help: "Token TCP clients must send in rpc.hello (default: $SEGMENTD_TOKEN); it may use and administer every book.") var token: String?
    @Option(help: "File of TCP tokens, one per line: TOKEN read|write|admin BOOK,BOOK|* (re-read on SIGHUP).") var tokenFile: String?
    @Option(help: "Seconds a request waits for its book to finish loading before -32007.") var bookLoadWait = 30.0
    @Option(help: "Time zone for dates without a zone (IANA name).") var timeZone = "UTC"
    @Option(help: "Seconds in-flight requests get to finish on SIGTERM.") var drainSeconds = 10
    @Option(help: "Seconds between re-evaluations of time-dependent triggers.") var reevaluateEvery = 60
    @Option(help: "Days trigger events are kept.") var eventRetentionDays = 30.0
    @Option(help: "Most trigger events kept.") var eventRetentionCount = 1_000_000
    @Option(help: "Seconds an events.subscribe client may take nothing off its connection while an event waits before its subscription ends with -32004 naming the cursor to resume after. Reading is seen in ~100 KB steps: raise it for consumers slower than ~2 KB/s. Accepted up to 86400, but useful only below the 300 s connection stall limit (a warning says so).")
    var subscriberTimeout = 60.0
    @Option(help: "Deprecated and ignored: subscribers read the event log at their own pace and are no longer dropped for falling behind.")
    var subscriberQueue: Int?
    @Option(help: "Freeze the clock at this ISO 8601 time (reproducible demos and docs; never in production).") var frozenClock: String?
    @Option(help: "Log level: trace, debug (a line per request), info, notice, warning, error, critical.") var logLevel = "info"
    @Option(help: "Log lines as text, or json: one JSON object per line.") var logFormat = "text"
    @Option(help: "Requests slower than this many milliseconds are logged at warning (0: never; streams and backups, long by design, never are).") var slowRequestMs = 100

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        guard logFormat == "text" || logFormat == "json" else { throw ValidationError("--log-format is text or json, not \(logFormat)") }
        guard slowRequestMs >= 0 else { throw ValidationError("--slow-request-ms must be 0 or more") }
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var config = AppConfiguration()
        try Self.refuseEarlierLayout(dataDir: dataDir, db: db)
        config.dataDirectory = dataDir ?? config.dataDirectory
        config.slowRequest = slowRequestMs == 0 ? nil : .milliseconds(slowRequestMs)
        config.databasePath = db
        config.tokenFile = tokenFile
        guard bookLoadWait > 0 else { throw ValidationError("--book-load-wait must be more than 0 seconds") }
        config.bookLoadWait = .milliseconds(Int64((bookLoadWait * 1_000).rounded(.up)))
        config.socketPath = socket
        config.exportDirectory = exportDir
        guard let mode = UInt16(socketMode, radix: 8) else { throw ValidationError("--socket-mode must be octal, like 600") }
        config.socketMode = mode
        config.socketGroup = socketGroup
        config.tcp = tcp
        config.metrics = metrics
        config.token = token ?? ProcessInfo.processInfo.environment["SEGMENTD_TOKEN"]
        guard let zone = TimeZone(identifier: timeZone) else { throw ValidationError("unknown time zone \(timeZone)") }
        config.timeZone = zone
        config.drainTimeout = .seconds(drainSeconds)
        guard reevaluateEvery > 0 else { throw ValidationError("--reevaluate-every must be at least 1 second") }
        config.reevaluateEvery = .seconds(reevaluateEvery)
        config.eventRetentionDays = eventRetentionDays
        config.eventRetentionCount = eventRetentionCount
        guard subscriberTimeout > 0, subscriberTimeout <= 86_400 else { throw ValidationError("--subscriber-timeout must be more than 0 and at most 86400 seconds") }
        config.subscriberTimeout = .milliseconds(Int64((subscriberTimeout * 1_000).rounded(.up)))
        if let frozenClock {
            guard let t = ISOTime().parseInstant(frozenClock) else { throw ValidationError("--frozen-clock needs a full ISO 8601 time") }
            config.clock = ManualTime(t)
        }
        let app = try SegmentdApplication.build(config)
        // What dependencies record through swift-metrics lands in the same registry.
        MetricsSystem.bootstrap(app.metrics.factory)
        if config.subscriberTimeout >= config.limits.idleTimeout {
            app.logger.warning("--subscriber-timeout is not below the connection stall limit (\(config.limits.idleTimeout)): a stalled subscriber's connection is closed first, without the error naming its cursor")
        }
        if subscriberQueue != nil {
            app.logger.warning("--subscriber-queue is deprecated and ignored: subscribers read the event log at their own pace; see --subscriber-timeout")
        }
        app.logger.info("serving", metadata: [
            "socket": "\(socket)", "data-dir": "\(config.dataDirectory)", "default-book": "\(app.catalog.layout.databasePath(of: "default"))",
            "books": "\(app.catalog.names.count)", "tcp": "\(tcp ?? "off")", "metrics": "\(metrics ?? "off")",
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
