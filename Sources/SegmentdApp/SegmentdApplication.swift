import EngagementDimension
import FieldDimension
import Foundation
import FunnelDimension
import LabelDimension
import LineRPC
import Logging
import PostgresStore
import SegmentCore
import SegmentDimension
import SegmentEngine
import SegmentRPC
import ServiceLifecycle
import StatusDimension
import Synchronization
import UnixSignals
import WireJSON

/// segmentd assembled: the five built-in dimensions, the books, and the RPC server.
///
/// `segmentd serve` calls `build` then `run`; the end-to-end tests call the same two.
///
/// ```swift
/// var config = AppConfiguration()
/// config.socketPath = tmp + "/s.sock"
/// config.dataDirectory = tmp + "/data"
/// let app = try SegmentdApplication.build(config)
/// try await app.run()   // until SIGTERM/SIGINT or app.server.shutdown()
/// ```
public struct SegmentdApplication: Sendable {
    /// Every book of the server.
    public let catalog: BookCatalog
    /// The `default` book's engine (loaded before the server listens).
    public let engine: Engine
    public let server: RPCServer
    /// Where file exports are written, a folder per book.
    public let exportDirectory: String
    /// The TCP tokens (re-read on SIGHUP); nil without TCP.
    public let tokens: TokenTable?
    /// Every metric of the server (what `/metrics` and `server.stats` show).
    public let metrics: ServerMetrics
    /// Where `/metrics` listens once it does (`AppConfiguration/metrics`).
    public let metricsAddress = BoundAddress()
    let metricsEndpoint: (host: String, port: Int)?
    let methods: SegmentMethods
    let clock: ClockService
    let parallelLoads: Int
    let backgroundLoads: Bool
    public let logger: Logger

    /// The built-in dimensions, registered explicitly, in one place.
    public static func builtInRegistry() -> DimensionRegistry {
        var registry = DimensionRegistry()
        registry.register(StatusDimension())
        registry.register(FieldDimension())
        registry.register(LabelDimension())
        registry.register(FunnelDimension())
        registry.register(EngagementDimension())
        registry.register(SegmentDimension())
        registry.defaultColumns = ["email", "name", "status"]
        return registry
    }

    /// Threads that load books, apart from those that serve requests, at a lower priority:
    /// a server that is loading its books keeps answering the ones that are loaded at about
    /// full speed (measured in the bench's many-books part).
    static let loaderThreads = WorkerThreads(name: "segmentd-load", count: 2, niceness: 10)

    /// The method namespaces that are the server's own: a dimension's methods live elsewhere.
    public static let serverNamespaces: Set<String> = ["rpc", "server", "books", "contacts", "segments", "triggers", "events", "suppression"]

    public static func build(
        _ config: AppConfiguration, registry: DimensionRegistry = builtInRegistry(), logger: Logger = Logger(label: "segmentd")
    ) throws -> SegmentdApplication {
        // Checked before any book is opened: opening one would add the dimension's table to it.
        for provider in registry.providers {
            for method in provider.methods where serverNamespaces.contains(String(method.name.prefix { $0 != "." })) {
                throw SegmentError.conflict(
                    "method \(method.name) of dimension \(provider.name) is in the server's own namespace (\(serverNamespaces.sorted().joined(separator: ", "))): name it under the dimension's, e.g. \(provider.name).\(method.name.split(separator: ".").last ?? "")")
            }
        }
        var engineConfig = Engine.Configuration(databasePath: "", clock: config.clock, timeZone: config.timeZone)
        engineConfig.eventRetentionSeconds = config.eventRetentionDays * 86_400
        engineConfig.eventRetentionCount = config.eventRetentionCount
        engineConfig.subscriberTimeoutSeconds = config.subscriberTimeout / .milliseconds(1) / 1_000
        engineConfig.subscriberPageSize = config.subscriberPageSize
        let metrics = ServerMetrics()
        engineConfig.metricsFactory = metrics.factory
        if let store = config.store {
            // A fleet node: every book is a schema of this PostgreSQL database.
            let url = try PostgresURL(store)
            var fleet = FleetSettings()
            fleet.readWait = config.readWait
            fleet.catchUpInterval = config.catchUpInterval
            engineConfig.fleet = fleet
            engineConfig.bookSpace = PostgresBookSpace(url: url, logger: logger)
            engineConfig.openStore = { book, providers in try PostgresBookStore(url: url, book: book, providers: providers, logger: logger) }
        }
        let metricsEndpoint = try config.metrics.map { text throws(SegmentError) in
            try AppConfiguration.parseAddress(text, option: "metrics", example: "127.0.0.1:9464")
        }
        if let endpoint = metricsEndpoint { try MetricsEndpoint.checkAvailable(host: endpoint.host, port: endpoint.port) }
        let layout = BookCatalog.Layout(dataDirectory: config.dataDirectory, defaultDatabase: config.databasePath)
        raiseOpenFileLimit(logger: logger)
        // Tokens first: a wrong token file stops start-up before any book is opened.
        var tokens: TokenTable?
        if config.tcp != nil {
            let table = try TokenTable(token: config.token, file: config.tokenFile)
            guard !table.isEmpty else {
                throw SegmentError.invalidParams(path: "tcp", "a TCP listener needs --token or a --token-file with at least one token")
            }
            tokens = table
        } else if config.tokenFile != nil {
            logger.warning("--token-file is ignored without --tcp: the Unix socket needs no token")
        }
        // SIGHUP re-reads the token file (TokenReloader); until that runs, and without a token
        // file, it must not end the server as its default action would.
        signal(SIGHUP, SIG_IGN)
        let catalog = try BookCatalog(
            layout: layout, engine: engineConfig, registry: registry, loadWait: config.bookLoadWait, loadExecutor: loaderThreads, logger: logger)
        let engine = try catalog.defaultEngine()
        try FileManager.default.createDirectory(atPath: config.exportDirectory, withIntermediateDirectories: true)
        metrics.attach(catalog)
        let methods = SegmentMethods(catalog: catalog, exportDirectory: config.exportDirectory, logger: logger, metricsFactory: metrics.factory)
        _ = try methods.preparedExportDirectory(for: BookCatalog.defaultBook)
        var rpc = RPCServerConfiguration()
        rpc.serverName = "segmentd"
        rpc.serverVersion = SegmentdVersion.current
        rpc.unixSocketPath = config.socketPath
        rpc.socketMode = config.socketMode
        rpc.socketGroup = config.socketGroup
        if let tcp = config.tcp, let table = tokens {
            let (host, port) = try AppConfiguration.parseTCP(tcp)
            rpc.tcp = RPCServerConfiguration.TCPListener(host: host, port: port)
            rpc.authenticate = { table.authenticate($0) }
        }
        rpc.limits = config.limits
        rpc.drainTimeout = config.drainTimeout
        rpc.metricsFactory = metrics.factory
        rpc.slowRequestThreshold = config.slowRequest
        // Under systemd with Type=notify: started once the socket accepts connections.
        rpc.onListening = { SystemdNotify.send("READY=1") }
        let bookScoped = Set(methods.all.filter { $0.annotations["book"] != nil }.map(\.name))
        rpc.requestMetadata = { method, params in
            guard bookScoped.contains(method) else { return [:] }
            // As sent (a bad one fails as invalid_params, and shows here as it was), shortened.
            guard let book = params["book"], book != .null else { return ["book": "\(BookCatalog.defaultBook)"] }
            return ["book": "\(String((book.stringValue ?? book.serialized()).prefix(80)))"]
        }
        let storage = SegmentdVersion.storage(registry: registry)
        rpc.helloExtras = { connection, credential in
            var extras = methods.helloExtras(credential: credential, transport: connection.transport)
            extras["storage"] = storage
            extras["commit"] = .string(SegmentdVersion.commit)
            // A fleet node: where its books are, and each loaded book's applied version and lag.
            let grant = connection.transport == .tcp ? (credential as? TokenCredential)?.grant : nil
            let mayUse = { (book: String) in connection.transport != .tcp || grant?.mayUse(book) == true }
            if let fleet = Self.fleetStats(catalog: catalog, mayUse: mayUse) {
                extras["fleet"] = fleet
            }
            return extras
        }
        let started = ContinuousClock.now
        let stats = RPCMethod(
            name: "server.stats",
            summary: "Books (contacts, segments, triggers, version, resident size), and for the Unix socket and admin tokens the process's memory, uptime and request counts. Totals are over the books the caller may see.",
            paramsSchema: ["type": "object", "properties": [:]], resultSchema: ["type": "object"]
        ) { request in
            var out = try Self.bookStats(catalog: catalog, request: request)
            // The server's own figures (all tenants' traffic) are for its operators only.
            guard try SegmentMethods.grant(of: request).map({ $0.access == .admin }) ?? true else { return .object(out) }
            let snapshot = metrics.snapshot()
            out["resident_bytes"] = .int(Int64(snapshot.value("process_resident_memory_bytes")))
            out["uptime_seconds"] = .double((ContinuousClock.now - started) / .milliseconds(1) / 1000)
            out["rpc"] = RPCFigures(snapshot).json
            return .object(out)
        }
        let server = RPCServer(configuration: rpc, methods: methods.all + [stats], logger: logger)
        return SegmentdApplication(
            catalog: catalog, engine: engine, server: server, exportDirectory: config.exportDirectory, tokens: tokens,
            metrics: metrics, metricsEndpoint: metricsEndpoint, methods: methods,
            clock: ClockService(catalog: catalog, every: config.reevaluateEvery, logger: logger),
            parallelLoads: config.bookLoadParallelism, backgroundLoads: config.loadBooksInBackground, logger: logger)
    }

    /// A fleet node's figures for one book (nil outside a fleet).
    static func json(_ status: FleetStatus) -> JSONValue {
        var out: [String: JSONValue] = [
            "applied_version": .int(status.appliedVersion), "store_version": .int(status.storeVersion), "lag_versions": .int(status.lag),
            "changes_applied": .int(Int64(status.changesApplied)), "reloads": .int(Int64(status.reloads)), "may_be_stale": .bool(status.mayBeStale),
            "clock_leader": .bool(status.clockLeader),
        ]
        if let reached = status.lastReached { out["store_reached_at"] = .string(ISOTime.format(reached)) }
        return .object(out)
    }

    /// `rpc.hello`'s `fleet`: the store kind and, per loaded book the caller may see, its
    /// applied version and lag (nil outside a fleet).
    static func fleetStats(catalog: BookCatalog, mayUse: (String) -> Bool) -> JSONValue? {
        var books: [String: JSONValue] = [:]
        var fleet = false
        for loaded in catalog.loaded {
            guard let status = loaded.engine.fleetStatus else { continue }
            fleet = true
            guard mayUse(loaded.name) else { continue }
            books[loaded.name] = json(status)
        }
        guard fleet else { return nil }
        return ["store": "postgres", "books": .object(books)]
    }

    /// `server.stats`' book part: per book, and totals over the books the caller may see.
    /// `version` is the `default` book's (as when a server held one book).
    static func bookStats(catalog: BookCatalog, request: RPCRequest) throws -> [String: JSONValue] {
        let grant = try SegmentMethods.grant(of: request)
        var books: [String: JSONValue] = [:]
        var contacts = 0, segments = 0, triggers = 0, resident = 0
        for status in catalog.statuses() where grant?.mayUse(status.name) ?? true {
            var entry: [String: JSONValue] = ["state": .string(status.state)]
            if let engine = status.engine {
                let book = engine.snapshot
                contacts += book.contactCount
                segments += book.segments.count
                triggers += book.triggers.count
                let bytes = engine.residentBytes
                resident += bytes
                entry["contacts"] = .int(Int64(book.contactCount))
                entry["version"] = .int(book.version)
                entry["resident_bytes"] = .int(Int64(bytes))
                if let fleet = engine.fleetStatus { entry["fleet"] = Self.json(fleet) }
            }
            books[status.name] = .object(entry)
        }
        var out: [String: JSONValue] = [
            "contacts": .int(Int64(contacts)), "segments": .int(Int64(segments)), "triggers": .int(Int64(triggers)),
            "books_resident_bytes": .int(Int64(resident)), "books": .object(books),
        ]
        if grant?.mayUse(BookCatalog.defaultBook) ?? true, let engine = catalog.loaded.first(where: { $0.name == BookCatalog.defaultBook })?.engine {
            out["version"] = .int(engine.snapshot.version)
        }
        return out
    }

    /// Serves until SIGTERM/SIGINT (or `server.shutdown()`), drains, then closes every book.
    /// Books other than `default` load in the background meanwhile; SIGHUP re-reads the
    /// token file.
    public func run() async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: server, successTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: clock, successTerminationBehavior: .ignore),
            .init(service: TokenReloader(tokens: tokens, logger: logger), successTerminationBehavior: .ignore),
        ]
        if let endpoint = metricsEndpoint {
            let service = MetricsEndpoint(metrics: metrics, host: endpoint.host, port: endpoint.port, logger: logger, bound: metricsAddress)
            services.append(.init(service: service, successTerminationBehavior: .ignore))
        }
        if backgroundLoads {
            services.append(.init(service: BackgroundLoad(catalog: catalog, parallel: parallelLoads), successTerminationBehavior: .ignore))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await catalog.close()
            throw error
        }
        try await catalog.close()
        logger.info("stopped; books closed")
    }

    /// Re-reads the token file (what SIGHUP does); throws, keeping the tokens in force, if it is wrong.
    public func reloadTokens() throws {
        try tokens?.reload()
    }

    /// Each book keeps a few files open (database, WAL, shared memory, lock, and SQLite's
    /// connections): raise the soft limit on open files to the hard one, as servers do.
    static func raiseOpenFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("raised the open-file limit", metadata: ["from": "\(before)", "to": "\(limit.rlim_max)"])
        }
    }
}

/// Loads the books other than `default` after the server started listening.
struct BackgroundLoad: Service {
    let catalog: BookCatalog
    let parallel: Int

    func run() async {
        await cancelWhenGracefulShutdown { await catalog.loadAll(parallel: parallel) }
    }
}

/// Re-reads the token file on SIGHUP.
struct TokenReloader: Service {
    let tokens: TokenTable?
    let logger: Logger

    func run() async {
        guard let tokens, let file = tokens.file else { return }
        await cancelWhenGracefulShutdown {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                do {
                    try tokens.reload()
                    logger.notice("token file re-read", metadata: ["file": "\(file)", "tokens": "\(tokens.count)"])
                } catch {
                    logger.error("token file not re-read; the tokens in force stay", metadata: ["file": "\(file)", "error": "\(error)"])
                }
            }
        }
    }
}
