import ArgumentParser
import Foundation
import Logging
import SegmentdApp

/// `segmentd serve`: runs the server until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (defaults: ./segmentd.sqlite and ./segmentd.sock).")

    @Option(help: "SQLite database file.") var db = "segmentd.sqlite"
    @Option(help: "Unix socket path.") var socket = "segmentd.sock"
    @Option(help: "Unix socket file mode, octal.") var socketMode = "600"
    @Option(help: "Also listen on TCP HOST:PORT (e.g. 127.0.0.1:7070); needs --token or SEGMENTD_TOKEN.") var tcp: String?
    @Option(help: "Token TCP clients must send in rpc.hello (default: $SEGMENTD_TOKEN).") var token: String?
    @Option(help: "Time zone for dates without a zone (IANA name).") var timeZone = "UTC"
    @Option(help: "Seconds in-flight requests get to finish on SIGTERM.") var drainSeconds = 10
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var config = AppConfiguration()
        config.databasePath = db
        config.socketPath = socket
        guard let mode = UInt16(socketMode, radix: 8) else { throw ValidationError("--socket-mode must be octal, like 600") }
        config.socketMode = mode
        config.tcp = tcp
        config.token = token ?? ProcessInfo.processInfo.environment["SEGMENTD_TOKEN"]
        guard let zone = TimeZone(identifier: timeZone) else { throw ValidationError("unknown time zone \(timeZone)") }
        config.timeZone = zone
        config.drainTimeout = .seconds(drainSeconds)
        let app = try SegmentdApplication.build(config)
        app.logger.info("serving", metadata: ["socket": "\(socket)", "db": "\(db)", "tcp": "\(tcp ?? "off")"])
        try await app.run()
    }
}
