import CoreMetrics
import Foundation
import LineRPC
import Prometheus
import SegmentCore
import SegmentEngine
import Synchronization
import WireJSON

/// The server's metrics: one Prometheus registry that the RPC server, the engines and the
/// streams record into through swift-metrics, plus the figures read off the books and the
/// process when scraped. `/metrics` (``MetricsEndpoint``) and `server.stats` read the same
/// registry.
///
/// Each application has its own registry (tests run several servers in one process); the
/// executable also makes it swift-metrics' global backend, for what dependencies record.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics backend over ``registry``, with segmentd's histogram buckets.
    public let factory: PrometheusMetricsFactory
    private let catalog: Mutex<BookCatalog?> = Mutex(nil)
    private let books = Mutex<[String: BookGauges]>([:])
    private let process: ProcessGauges
    /// One scrape at a time: sampling sets gauges, then the registry is written out.
    private let scraping = Mutex(())

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Requests take from tens of microseconds (counts) to seconds (large writes, streams).
        factory.durationHistogramBuckets[RPCMetricName.requestDuration] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2_500) / 1_000,
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10), .seconds(30),
        ]
        self.factory = factory
        process = ProcessGauges(factory: factory)
    }

    /// The books whose figures a scrape samples.
    func attach(_ catalog: BookCatalog) { self.catalog.withLock { $0 = catalog } }

    /// The Prometheus text exposition of every metric, with the books' and the process's
    /// figures sampled now.
    public func exposition() -> String {
        scraping.withLock { _ in
            sample()
            return registry.emitToString()
        }
    }

    /// Every sample, parsed back from the exposition: what `server.stats` and the tests read.
    public func snapshot() -> MetricsSnapshot { MetricsSnapshot(parsing: exposition()) }

    /// The RPC server's figures (the `rpc` part of `server.stats`).
    public func rpc() -> RPCFigures { RPCFigures(snapshot()) }

    private func sample() {
        process.sample()
        guard let catalog = catalog.withLock({ $0 }) else { return }
        let statuses = catalog.statuses()
        var counts: [String: Int] = [:]
        books.withLock { gauges in
            var present = Set<String>()
            for status in statuses {
                present.insert(status.name)
                counts[status.state, default: 0] += 1
                guard let engine = status.engine else { continue }
                let book = gauges[status.name] ?? BookGauges(book: status.name, fleet: engine.fleetStatus != nil, factory: factory)
                gauges[status.name] = book
                book.sample(engine)
            }
            for (name, book) in gauges where !present.contains(name) {
                book.destroy()
                gauges.removeValue(forKey: name)
            }
        }
        for state in ["ready", "loading", "failed"] {
            CoreMetrics.Gauge(label: "segmentd_books", dimensions: [("state", state)], factory: factory).record(counts[state, default: 0])
        }
    }
}

/// A book's figures, sampled at each scrape, labelled `book`: an SQLite book's WAL size, a
/// fleet node's ``FleetGauges``.
private struct BookGauges: Sendable {
    let contacts, version, resident, subscribers, lag: CoreMetrics.Gauge
    let wal: CoreMetrics.Gauge?
    let fleet: FleetGauges?

    init(book: String, fleet: Bool, factory: any MetricsFactory) {
        func gauge(_ name: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: name, dimensions: [("book", book)], factory: factory) }
        contacts = gauge("segmentd_book_contacts")
        version = gauge("segmentd_book_version")
        resident = gauge("segmentd_book_resident_bytes")
        subscribers = gauge("segmentd_subscribers")
        lag = gauge("segmentd_subscriber_lag_events")
        wal = fleet ? nil : gauge("segmentd_sqlite_wal_bytes")
        self.fleet = fleet ? FleetGauges(gauge) : nil
    }

    func sample(_ engine: Engine) {
        let book = engine.snapshot
        contacts.record(book.contactCount)
        version.record(book.version)
        resident.record(engine.residentBytes)
        wal?.record(engine.walBytes)
        if let fleet, let status = engine.fleetStatus { fleet.sample(status, now: engine.now) }
        let delivered = engine.subscribers.deliveredCursors
        subscribers.record(delivered.count)
        // The subscriber furthest behind the newest event: what alerting wants.
        let newest = engine.newestCursor
        lag.record(delivered.map { max(0, newest - $0) }.max() ?? 0)
    }

    func destroy() {
        for gauge in [contacts, version, resident, subscribers, lag] + [wal].compactMap({ $0 }) { gauge.destroy() }
        fleet?.destroy()
    }
}

/// A fleet node's figures for one book (what `server.stats` shows as `books.NAME.fleet`).
private struct FleetGauges: Sendable {
    let storeVersion, lag, stale, reachedAgo, leader: CoreMetrics.Gauge

    init(_ gauge: (String) -> CoreMetrics.Gauge) {
        storeVersion = gauge("segmentd_fleet_store_version")
        lag = gauge("segmentd_fleet_lag_versions")
        stale = gauge("segmentd_fleet_may_be_stale")
        reachedAgo = gauge("segmentd_fleet_store_reached_seconds_ago")
        leader = gauge("segmentd_fleet_clock_leader")
    }

    func sample(_ status: FleetStatus, now: Double) {
        storeVersion.record(status.storeVersion)
        lag.record(status.lag)
        stale.record(status.mayBeStale ? 1 : 0)
        // Never reached yet: as old as can be said, which alerting treats as stale.
        reachedAgo.record(status.lastReached.map { max(0, now - $0) } ?? Double(Int32.max))
        leader.record(status.clockLeader ? 1 : 0)
    }

    func destroy() {
        for gauge in [storeVersion, lag, stale, reachedAgo, leader] { gauge.destroy() }
    }
}

/// The process's figures under their usual Prometheus names.
private struct ProcessGauges: Sendable {
    let resident, openFiles, started: CoreMetrics.Gauge
    let build: CoreMetrics.Gauge

    init(factory: any MetricsFactory) {
        resident = CoreMetrics.Gauge(label: "process_resident_memory_bytes", factory: factory)
        openFiles = CoreMetrics.Gauge(label: "process_open_fds", factory: factory)
        started = CoreMetrics.Gauge(label: "process_start_time_seconds", factory: factory)
        started.record(Date().timeIntervalSince1970)
        build = CoreMetrics.Gauge(
            label: "segmentd_build_info",
            dimensions: [("version", SegmentdVersion.current), ("commit", SegmentdVersion.commit)], factory: factory)
        build.record(1)
    }

    func sample() {
        resident.record(Self.residentBytes())
        openFiles.record((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0)
    }

    /// The process's resident memory, from /proc (0 where unavailable).
    static func residentBytes() -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return 0 }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// Samples of a Prometheus text exposition: `name{label="value",…} number` lines.
public struct MetricsSnapshot: Sendable {
    public struct Sample: Sendable {
        public var name: String
        public var labels: [String: String]
        public var value: Double

        public init(name: String, labels: [String: String], value: Double) {
            self.name = name
            self.labels = labels
            self.value = value
        }
    }

    public var samples: [Sample] = []

    /// Samples parsed elsewhere (the tests read them with Prometheus' own parser).
    public init(samples: [Sample]) { self.samples = samples }

    public init(parsing text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            if let sample = Self.parse(line) { samples.append(sample) }
        }
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.lazy.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }.map(\.value).reduce(0, +)
    }

    /// The samples named `name`, summed by the value of `label`.
    public func sum(_ name: String, by label: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for sample in samples where sample.name == name {
            if let key = sample.labels[label] { out[key, default: 0] += sample.value }
        }
        return out
    }

    private static func parse(_ line: Substring) -> Sample? {
        let chars = Array(line.unicodeScalars)
        var i = 0
        var name = ""
        while i < chars.count, chars[i] != "{", chars[i] != " " { name.unicodeScalars.append(chars[i]); i += 1 }
        var labels: [String: String] = [:]
        if i < chars.count, chars[i] == "{" {
            i += 1
            while i < chars.count, chars[i] != "}" {
                var key = ""
                while i < chars.count, chars[i] != "=" { key.unicodeScalars.append(chars[i]); i += 1 }
                i += 2  // `="`
                var value = ""
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "\\", i + 1 < chars.count {
                        i += 1
                        value.unicodeScalars.append(chars[i] == "n" ? "\n" : chars[i])
                    } else {
                        value.unicodeScalars.append(chars[i])
                    }
                    i += 1
                }
                i += 1  // closing quote
                if i < chars.count, chars[i] == "," { i += 1 }
                labels[key.trimmingCharacters(in: .whitespaces)] = value
            }
            i += 1
        }
        let rest = String(String.UnicodeScalarView(chars[min(i, chars.count)...])).trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, let value = Double(rest.split(separator: " ").first ?? "") else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }
}

/// The RPC server's traffic since start, read from the metrics (what `server.stats` shows).
public struct RPCFigures: Sendable, Equatable {
    public var connectionsOpen: Int
    public var connectionsTotal: Int
    public var connectionsRefused: Int
    public var requestsInFlight: Int
    /// Requests by method, counted when answered; unknown methods count as `"(unknown)"`.
    public var requestsByMethod: [String: Int]
    /// Error replies by `data.type`.
    public var errorsByType: [String: Int]
    public var bytesIn: Int
    public var bytesOut: Int

    init(_ snapshot: MetricsSnapshot) {
        func int(_ name: String) -> Int { Int(snapshot.value(name)) }
        connectionsOpen = int(RPCMetricName.connectionsOpen)
        connectionsTotal = int(RPCMetricName.connectionsTotal)
        connectionsRefused = int(RPCMetricName.connectionsRefused)
        requestsInFlight = int(RPCMetricName.requestsInFlight)
        requestsByMethod = snapshot.sum(RPCMetricName.requests, by: "method").mapValues { Int($0) }
        errorsByType = snapshot.sum(RPCMetricName.errors, by: "type").mapValues { Int($0) }
        bytesIn = int(RPCMetricName.receivedBytes)
        bytesOut = int(RPCMetricName.sentBytes)
    }

    /// The JSON form (for `server.stats`).
    public var json: JSONValue {
        [
            "connections_open": .int(Int64(connectionsOpen)),
            "connections_total": .int(Int64(connectionsTotal)),
            "connections_refused": .int(Int64(connectionsRefused)),
            "requests_in_flight": .int(Int64(requestsInFlight)),
            "requests_by_method": .object(requestsByMethod.mapValues { .int(Int64($0)) }),
            "errors_by_type": .object(errorsByType.mapValues { .int(Int64($0)) }),
            "bytes_in": .int(Int64(bytesIn)),
            "bytes_out": .int(Int64(bytesOut)),
        ]
    }
}
