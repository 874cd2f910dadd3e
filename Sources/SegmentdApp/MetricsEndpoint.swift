import Foundation
import Hummingbird
import LineRPC
import Logging
import NIOCore
import SegmentCore
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
            // Sampling walks every book (resident sizes): on the blocking threads, not the
            // shared pool.
            let text = try await WorkerThreads.blocking.run { metrics.exposition() }
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
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

extension MetricsEndpoint {
    /// Throws, naming the address, if `host:port` cannot be listened on now (a port in use, an
    /// address not on this machine): checked before the server starts, so that a wrong
    /// `--metrics` stops start-up rather than a server that already said it was ready.
    static func checkAvailable(host: String, port: Int) throws(SegmentError) {
        guard port != 0 else { return }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let first = found else {
            throw SegmentError.invalidParams(path: "metrics", "cannot resolve the metrics host \(host)")
        }
        defer { freeaddrinfo(first) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            throw SegmentError.invalidParams(path: "metrics", "cannot listen for metrics on \(host):\(port): \(reason)")
        }
    }
}
