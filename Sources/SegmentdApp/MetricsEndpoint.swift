import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Serves `GET /metrics` (Prometheus text format) over HTTP, through Hummingbird: what
/// `--metrics HOST:PORT` turns on. Any other path is 404.
struct MetricsEndpoint: Service {
    let metrics: ServerMetrics
    let host: String
    let port: Int
    let logger: Logger
    /// Where it listens once bound (port 0 picks a free one).
    let bound: BoundAddress

    func run() async throws {
        let router = Router()
        let metrics = self.metrics
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.exposition())))
        }
        let logger = self.logger, bound = self.bound
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "segmentd"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                bound.set(host: channel.localAddress?.ipAddress, port: channel.localAddress?.port)
                logger.info("metrics listening", metadata: ["metrics.address": "\(address)"])
            },
            logger: logger.silenced(below: .warning)
        )
        try await app.run()
    }
}

/// The metrics endpoint's address once it listens.
public final class BoundAddress: Sendable {
    private let value = Mutex<(host: String, port: Int)?>(nil)

    public var current: (host: String, port: Int)? { value.withLock { $0 } }

    func set(host: String?, port: Int?) {
        guard let host, let port else { return }
        value.withLock { $0 = (host, port) }
    }
}

extension Logger {
    /// This logger, logging nothing below `level` (Hummingbird logs each request at debug).
    func silenced(below level: Logger.Level) -> Logger {
        var copy = self
        if copy.logLevel < level { copy.logLevel = level }
        return copy
    }
}
