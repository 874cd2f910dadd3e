import Synchronization
import WireJSON

/// A snapshot of a server's counters since it started.
///
/// ```swift
/// let stats = server.statistics()
/// stats.requestsByMethod["segments.count"]  // 12
/// ```
public struct RPCStatistics: Sendable, Equatable {
    public var connectionsOpen = 0
    public var connectionsTotal = 0
    /// Connections turned away because ``RPCLimits/maxConnections`` were open.
    public var connectionsRefused = 0
    public var requestsInFlight = 0
    /// Requests (and notifications) by method; unknown methods count as `"(unknown)"`.
    public var requestsByMethod: [String: Int] = [:]
    /// Error replies by `data.type`.
    public var errorsByType: [String: Int] = [:]
    public var bytesIn = 0
    public var bytesOut = 0

    public init() {}

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

/// The live, lock-protected counters behind ``RPCStatistics``, shared by all connections.
final class StatisticsRecorder: Sendable {
    private let counters = Mutex(RPCStatistics())

    func snapshot() -> RPCStatistics { counters.withLock { $0 } }

    /// Admits a connection unless `limit` are open; returns whether it was admitted.
    func admitConnection(limit: Int) -> Bool {
        counters.withLock { stats in
            guard stats.connectionsOpen < limit else {
                stats.connectionsRefused += 1
                return false
            }
            stats.connectionsOpen += 1
            stats.connectionsTotal += 1
            return true
        }
    }

    func connectionClosed() { counters.withLock { $0.connectionsOpen -= 1 } }
    func request(_ method: String) { counters.withLock { $0.requestsByMethod[method, default: 0] += 1 } }
    func error(_ type: String) { counters.withLock { $0.errorsByType[type, default: 0] += 1 } }
    func bytesIn(_ count: Int) { counters.withLock { $0.bytesIn += count } }
    func bytesOut(_ count: Int) { counters.withLock { $0.bytesOut += count } }
    func inFlight(_ delta: Int) { counters.withLock { $0.requestsInFlight += delta } }
}
