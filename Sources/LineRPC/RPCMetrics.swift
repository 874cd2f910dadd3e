import CoreMetrics
import Synchronization

/// The server's traffic, recorded through swift-metrics into whatever backend the
/// application gives (``RPCServerConfiguration/metricsFactory``; segmentd's is Prometheus).
///
/// | metric | type | labels |
/// |---|---|---|
/// | `segmentd_rpc_requests_total` | counter | `method`, `outcome` (`ok` or the error's `data.type`) |
/// | `segmentd_rpc_request_duration_seconds` | histogram (timer) | `method`: requests that ran (not those refused before running) |
/// | `segmentd_rpc_errors_total` | counter | `type`: every error reply, also those answering no request (parse errors, oversized lines, refused connections) |
/// | `segmentd_rpc_connections_open`, `segmentd_rpc_requests_in_flight` | gauge | |
/// | `segmentd_rpc_connections_total`, `segmentd_rpc_connections_refused_total` | counter | |
/// | `segmentd_rpc_received_bytes_total`, `segmentd_rpc_sent_bytes_total` | counter | |
/// | `segmentd_stream_bytes_total` | counter | `method`: the notification lines a streaming method sent |
///
/// Unknown method names count as `(unknown)`, so a client cannot make series at will.
/// The limit on connections is enforced here too: the gauge reports the same count.
final class RPCMetrics: Sendable {
    private let factory: any MetricsFactory
    private let openConnections = Atomic<Int>(0)
    private let connectionsOpen: Meter
    private let connectionsTotal: Counter
    private let connectionsRefused: Counter
    private let inFlight: Meter
    private let received: Counter
    private let sent: Counter
    /// Per-label handles, made on first use (a method's outcomes are few).
    private let requests = HandleTable<Counter>()
    private let durations = HandleTable<Timer>()
    private let errors = HandleTable<Counter>()
    private let streams = HandleTable<Counter>()

    init(factory: any MetricsFactory) {
        self.factory = factory
        connectionsOpen = Meter(label: RPCMetricName.connectionsOpen, factory: factory)
        connectionsTotal = Counter(label: RPCMetricName.connectionsTotal, factory: factory)
        connectionsRefused = Counter(label: RPCMetricName.connectionsRefused, factory: factory)
        inFlight = Meter(label: RPCMetricName.requestsInFlight, factory: factory)
        received = Counter(label: RPCMetricName.receivedBytes, factory: factory)
        sent = Counter(label: RPCMetricName.sentBytes, factory: factory)
        // Zero series exist from the start, so a scrape before the first request sees them.
        connectionsOpen.set(0)
        inFlight.set(0)
    }

    /// Admits a connection unless `limit` are open; returns whether it was admitted.
    func admitConnection(limit: Int) -> Bool {
        var open = openConnections.load(ordering: .relaxed)
        while true {
            guard open < limit else {
                connectionsRefused.increment()
                return false
            }
            let (exchanged, original) = openConnections.compareExchange(expected: open, desired: open + 1, ordering: .relaxed)
            if exchanged { break }
            open = original
        }
        connectionsOpen.increment()
        connectionsTotal.increment()
        return true
    }

    func connectionClosed() {
        openConnections.subtract(1, ordering: .relaxed)
        connectionsOpen.decrement()
    }

    /// One answered (or run) request: its method, `ok` or its error type, and how long it ran
    /// (nil for one refused before it ran, which the latency histogram leaves out).
    func request(_ method: String, outcome: String, duration: Duration?) {
        requests.handle(method + "\u{0}" + outcome) {
            Counter(label: RPCMetricName.requests, dimensions: [("method", method), ("outcome", outcome)], factory: factory)
        }.increment()
        guard let duration else { return }
        let timer = durations.handle(method) {
            Timer(label: RPCMetricName.requestDuration, dimensions: [("method", method)], factory: factory)
        }
        timer.recordNanoseconds(duration.nanoseconds)
    }

    /// An error reply of `type` was sent.
    func error(_ type: String) {
        errors.handle(type) { Counter(label: RPCMetricName.errors, dimensions: [("type", type)], factory: factory) }.increment()
    }

    /// The counter of the bytes a streaming method's notifications take.
    func streamBytes(_ method: String) -> Counter {
        streams.handle(method) { Counter(label: RPCMetricName.streamBytes, dimensions: [("method", method)], factory: factory) }
    }

    func bytesIn(_ count: Int) { received.increment(by: count) }
    func bytesOut(_ count: Int) { sent.increment(by: count) }
    func started() { inFlight.increment() }
    func finished() { inFlight.decrement() }
}

/// The names of the metrics ``RPCServer`` records (see `RPCMetrics`), for whoever reads them
/// back (`server.stats`, tests).
public enum RPCMetricName {
    public static let requests = "segmentd_rpc_requests_total"
    public static let requestDuration = "segmentd_rpc_request_duration_seconds"
    public static let errors = "segmentd_rpc_errors_total"
    public static let connectionsOpen = "segmentd_rpc_connections_open"
    public static let connectionsTotal = "segmentd_rpc_connections_total"
    public static let connectionsRefused = "segmentd_rpc_connections_refused_total"
    public static let requestsInFlight = "segmentd_rpc_requests_in_flight"
    public static let receivedBytes = "segmentd_rpc_received_bytes_total"
    public static let sentBytes = "segmentd_rpc_sent_bytes_total"
    public static let streamBytes = "segmentd_stream_bytes_total"
}

/// Metric handles by their label values, made on first use.
private final class HandleTable<Handle: Sendable>: Sendable {
    private let table = Mutex<[String: Handle]>([:])

    func handle(_ key: String, make: () -> Handle) -> Handle {
        table.withLock { table in
            if let handle = table[key] { return handle }
            let handle = make()
            table[key] = handle
            return handle
        }
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled &+ attoseconds / 1_000_000_000
    }
}
