import Foundation
import LineRPC
import SegmentCore

/// Everything `segmentd serve` can be told; the defaults are the embedded setup: a data
/// directory of SQLite books and a Unix socket in the working directory.
public struct AppConfiguration: Sendable {
    /// Where books live: `<dataDirectory>/books/<name>.sqlite`.
    public var dataDirectory = "segmentd-data"
    /// `--db FILE`: this file is the `default` book (instead of `books/default.sqlite`).
    public var databasePath: String?
    /// `--store postgres://…`: the books live in this PostgreSQL database, shared by a fleet
    /// of nodes (nil: SQLite files in the data directory).
    public var store: String?
    /// How long a read with `min_version` waits for this node to apply that version.
    public var readWait: Duration = .seconds(1)
    /// How often a fleet node asks PostgreSQL for changes it was not notified of.
    public var catchUpInterval: Duration = .seconds(1)
    /// `--token-file`: one TCP token per line with its books and access; re-read on SIGHUP.
    public var tokenFile: String?
    /// How long a request waits for its book to finish loading before -32007.
    public var bookLoadWait: Duration = .seconds(30)
    /// Books loaded at once in the background after start-up.
    public var bookLoadParallelism = 2
    /// Whether books other than `default` load in the background after start-up (not a
    /// serve flag: without it a book loads on its first request only, and its clock work
    /// waits for that; tests turn it off to see the first-request path alone).
    public var loadBooksInBackground = true
    public var socketPath = "segmentd.sock"
    public var socketMode: UInt16 = 0o600
    /// Group of the socket file (name or id); with `socketMode` 0o660 its members may connect.
    public var socketGroup: String?
    /// Where `segments.export {path}` may write (created at start if missing).
    public var exportDirectory = "exports"
    /// `HOST:PORT` to listen on TCP as well (loopback by default; requires `token`).
    public var tcp: String?
    public var token: String?
    /// `HOST:PORT` to serve Prometheus metrics on at `/metrics` (loopback when only a port is
    /// given); nil: no endpoint (the metrics are still kept, for `server.stats`).
    public var metrics: String?
    public var timeZone = TimeZone(identifier: "UTC")!
    public var clock: any TimeSource = SystemTime()
    public var limits = RPCLimits()
    public var drainTimeout: Duration = .seconds(10)
    /// Requests slower than this are logged at warning (nil: never).
    public var slowRequest: Duration? = .milliseconds(100)
    /// How often time-dependent triggers are re-evaluated (and the event log pruned).
    public var reevaluateEvery: Duration = .seconds(60)
    public var eventRetentionDays: Double = 30
    public var eventRetentionCount = 1_000_000
    /// How long an `events.subscribe` client may take nothing from its connection, while an
    /// event waits to be written, before its subscription ends with -32004.
    public var subscriberTimeout: Duration = .seconds(60)
    /// Events a subscriber reads from the log at once (not a serve flag; tests shrink it).
    public var subscriberPageSize = 500

    public init() {}

    /// Parses `HOST:PORT` (`127.0.0.1:7070`, `[::1]:7070`, or `:7070` for loopback).
    static func parseTCP(_ text: String) throws(SegmentError) -> (host: String, port: Int) {
        try parseAddress(text, option: "tcp", example: "127.0.0.1:7070")
    }

    /// `HOST:PORT`, `:PORT` or `PORT` (the host then is loopback, 127.0.0.1); `[::1]:PORT` for IPv6.
    static func parseAddress(_ text: String, option: String, example: String) throws(SegmentError) -> (host: String, port: Int) {
        let colon = text.lastIndex(of: ":")
        let portText = colon.map { text[text.index(after: $0)...] } ?? Substring(text)
        guard let port = Int(portText), (0...65_535).contains(port) else {
            throw SegmentError.invalidParams(path: option, "expected HOST:PORT such as \(example), got \"\(text)\"")
        }
        var host = colon.map { String(text[..<$0]) } ?? ""
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }
}
