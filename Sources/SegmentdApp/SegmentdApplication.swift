import EngagementDimension
import FieldDimension
import Foundation
import FunnelDimension
import LabelDimension
import LineRPC
import Logging
import SegmentCore
import SegmentEngine
import SegmentRPC
import ServiceLifecycle
import StatusDimension
import Synchronization
import WireJSON

/// segmentd assembled: the five built-in dimensions, the engine and the RPC server.
///
/// `segmentd serve` calls `build` then `run`; the end-to-end tests call the same two.
///
/// ```swift
/// var config = AppConfiguration()
/// config.socketPath = tmp + "/s.sock"
/// let app = try SegmentdApplication.build(config)
/// try await app.run()   // until SIGTERM/SIGINT or app.server.shutdown()
/// ```
public struct SegmentdApplication: Sendable {
    public let engine: Engine
    public let server: RPCServer
    /// Where file exports are written.
    public let exportDirectory: String
    let clock: ClockService
    public let logger: Logger

    /// The built-in dimensions, registered explicitly, in one place.
    public static func builtInRegistry() -> DimensionRegistry {
        var registry = DimensionRegistry()
        registry.register(StatusDimension())
        registry.register(FieldDimension())
        registry.register(LabelDimension())
        registry.register(FunnelDimension())
        registry.register(EngagementDimension())
        return registry
    }

    public static func build(
        _ config: AppConfiguration, registry: DimensionRegistry = builtInRegistry(), logger: Logger = Logger(label: "segmentd")
    ) throws -> SegmentdApplication {
        var engineConfig = Engine.Configuration(databasePath: config.databasePath, clock: config.clock, timeZone: config.timeZone)
        engineConfig.eventRetentionSeconds = config.eventRetentionDays * 86_400
        engineConfig.eventRetentionCount = config.eventRetentionCount
        engineConfig.subscriberTimeoutSeconds = config.subscriberTimeout / .milliseconds(1) / 1_000
        engineConfig.subscriberPageSize = config.subscriberPageSize
        let engine = try Engine(configuration: engineConfig, registry: registry, logger: logger)
        try FileManager.default.createDirectory(atPath: config.exportDirectory, withIntermediateDirectories: true)
        let methods = SegmentMethods(engine: engine, exportDirectory: config.exportDirectory)
        var rpc = RPCServerConfiguration()
        rpc.serverName = "segmentd"
        rpc.serverVersion = SegmentdVersion.current
        rpc.unixSocketPath = config.socketPath
        rpc.socketMode = config.socketMode
        rpc.socketGroup = config.socketGroup
        if let tcp = config.tcp {
            let (host, port) = try AppConfiguration.parseTCP(tcp)
            rpc.tcp = RPCServerConfiguration.TCPListener(host: host, port: port)
        }
        rpc.token = config.token
        rpc.limits = config.limits
        rpc.drainTimeout = config.drainTimeout
        let extras = methods.helloExtras
        rpc.helloExtras = { extras }
        let serverRef = ServerReference()
        let started = ContinuousClock.now
        let stats = RPCMethod(
            name: "server.stats", summary: "Contacts, segments, memory, uptime and request counts.",
            paramsSchema: ["type": "object", "properties": [:]], resultSchema: ["type": "object"]
        ) { _ in
            let book = engine.snapshot
            var out: [String: JSONValue] = [
                "contacts": .int(Int64(book.contactCount)), "segments": .int(Int64(book.segments.count)),
                "triggers": .int(Int64(book.triggers.count)),
                "version": .int(book.version), "resident_bytes": .int(Self.residentBytes()),
                "uptime_seconds": .double((ContinuousClock.now - started) / .milliseconds(1) / 1000),
            ]
            if let server = serverRef.server { out["rpc"] = server.statistics().json }
            return .object(out)
        }
        let backup = BackupMethod.make(engine: engine, exportDirectory: config.exportDirectory)
        let server = RPCServer(configuration: rpc, methods: methods.all + [stats, backup], logger: logger)
        serverRef.set(server)
        return SegmentdApplication(
            engine: engine, server: server, exportDirectory: config.exportDirectory, clock: ClockService(engine: engine, every: config.reevaluateEvery, logger: logger), logger: logger)
    }

    /// Serves until SIGTERM/SIGINT (or `server.shutdown()`), drains, then closes the store.
    public func run() async throws {
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: server, successTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: clock, successTerminationBehavior: .ignore),
            ], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            try? engine.close()
            throw error
        }
        try engine.close()
        logger.info("stopped; store closed")
    }

    /// The process's resident memory, from /proc (0 where unavailable).
    static func residentBytes() -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return 0 }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// Lets `server.stats`, created before the server, read the server's statistics.
final class ServerReference: Sendable {
    private let stored = Mutex<RPCServer?>(nil)
    var server: RPCServer? { stored.withLock { $0 } }
    func set(_ server: RPCServer) { stored.withLock { $0 = server } }
}
