import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import WireJSON

/// A newline-delimited JSON-RPC 2.0 server on a Unix socket and/or TCP, as a `Service`.
///
/// Each connection is one task in a discarding task group (per-connection failures stay
/// there); each request is a child task of its connection. Connections run on threads of
/// their own and handlers on others (``RPCServerConfiguration/connectionThreads`` and
/// ``RPCServerConfiguration/handlerThreads``), never on Swift's shared cooperative pool, so a
/// handler that computes for seconds cannot stall `rpc.ping` on another connection. Graceful shutdown (SIGTERM through
/// a `ServiceGroup`, or ``shutdown()``) stops accepting, answers new requests with
/// `-32006`, gives in-flight requests ``RPCServerConfiguration/drainTimeout`` before
/// cancelling them (each still gets a reply), closes the connections, removes the socket
/// file, and returns from ``run()``.
///
/// ```swift
/// let server = RPCServer(configuration: .init(unixSocketPath: "/tmp/demo.sock"), methods: [echo], logger: logger)
/// let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
public final class RPCServer: Service, Sendable {
    /// One bound listener.
    struct Listener: Sendable {
        let channel: NIOAsyncChannel<NIOAsyncChannel<LineFrame, ByteBuffer>, Never>
        let transport: RPCTransport
        let socketFile: UnixSocketFile?
    }

    private enum Lifecycle {
        case idle
        case starting
        case started([Listener])
        case running([Listener])
        case stopped
    }

    public let configuration: RPCServerConfiguration
    let logger: Logger
    let eventLoopGroup: any EventLoopGroup
    let metrics: RPCMetrics
    let shutdownSignal = AsyncSignal()
    let dispatcher: RPCDispatcher
    /// Runs the connections: framing, parsing, built-ins, replies.
    let connectionThreads: WorkerThreads
    /// Runs method handlers, so a long one never holds a thread that connections need.
    let handlerThreads: WorkerThreads
    private let lifecycle = Mutex(Lifecycle.idle)
    private let lastConnectionID = Atomic<UInt64>(0)
    /// Accepted connections the accept loop has not taken yet (see ``UnservedConnections``).
    let unserved = UnservedConnections()

    /// Creates a server; nothing is bound until ``start()`` or ``run()``.
    ///
    /// - Precondition: method names are unique and do not start with a built-in name
    ///   (`rpc.hello`, `rpc.ping`, `rpc.cancel`, `rpc.discover`).
    public init(
        configuration: RPCServerConfiguration,
        methods: [RPCMethod],
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        metrics = RPCMetrics(factory: configuration.metricsFactory)
        connectionThreads = WorkerThreads(name: "rpc-connections", count: configuration.connectionThreads)
        handlerThreads = WorkerThreads(name: "rpc-handlers", count: configuration.handlerThreads)
        self.dispatcher = RPCDispatcher(
            configuration: configuration, methods: methods, metrics: metrics, shutdownSignal: shutdownSignal,
            handlerExecutor: handlerThreads, logger: logger
        )
    }

    deinit {
        connectionThreads.shutdown()
        handlerThreads.shutdown()
    }

    /// Binds the listeners; once it returns, clients can connect. Calling it again is a no-op.
    ///
    /// Throws ``RPCServerError`` for a bad configuration (TCP without token, socket path too
    /// long, a live server or a non-socket file at the path) and NIO errors for failed binds.
    public func start() async throws {
        let proceed = try lifecycle.withLock { lifecycle -> Bool in
            switch lifecycle {
            case .idle:
                lifecycle = .starting
                return true
            case .starting: throw RPCServerError("the server is already starting")
            case .started, .running: return false
            case .stopped: throw RPCServerError("the server has stopped")
            }
        }
        guard proceed else { return }
        let listeners: [Listener]
        do {
            try configuration.validate()
            listeners = try await bindListeners()
        } catch {
            lifecycle.withLock { $0 = .idle }
            throw error
        }
        lifecycle.withLock { $0 = .started(listeners) }
        if shutdownSignal.isFired { closeListeners() }
    }

    /// The bound TCP port once started (useful with port 0), else `nil`.
    public var tcpPort: Int? {
        listeners.first { $0.transport == .tcp }?.channel.channel.localAddress?.port
    }

    /// Serves until graceful shutdown or task cancellation, then drains and returns.
    ///
    /// Starts the server first if needed. Task cancellation is the hard stop: in-flight
    /// requests are cancelled at once (they still try to reply).
    public func run() async throws {
        if case .idle = lifecycle.withLock({ $0 }) { try await start() }
        let listeners = try lifecycle.withLock { lifecycle -> [Listener] in
            switch lifecycle {
            case .started(let listeners):
                lifecycle = .running(listeners)
                return listeners
            case .stopped: return []
            case .idle, .starting, .running: throw RPCServerError("run() called twice or while starting")
            }
        }
        for listener in listeners {
            logger.info("listening", metadata: ["rpc.transport": "\(listener.transport)", "rpc.address": "\(describe(listener))"])
        }
        configuration.onListening?()
        await withTaskExecutorPreference(connectionThreads) {
            await withGracefulShutdownHandler {
                await serve(listeners)
            } onGracefulShutdown: {
                self.shutdown()
            }
        }
        connectionThreads.shutdown()
        handlerThreads.shutdown()
        for listener in listeners { listener.socketFile?.remove() }
        lifecycle.withLock { $0 = .stopped }
        logger.info("server stopped")
    }

    /// Starts a graceful shutdown (the same path as SIGTERM). Returns immediately; ``run()``
    /// returns once the connections are drained.
    public func shutdown() {
        guard shutdownSignal.fire() else { return }
        logger.info("graceful shutdown: no longer accepting connections")
        closeListeners()
    }

    // MARK: Serving

    private var listeners: [Listener] {
        lifecycle.withLock { lifecycle in
            switch lifecycle {
            case .started(let listeners), .running(let listeners): return listeners
            default: return []
            }
        }
    }

    private func closeListeners() {
        for listener in listeners { listener.channel.channel.close(promise: nil) }
    }

    private func serve(_ listeners: [Listener]) async {
        await withDiscardingTaskGroup { group in
            for listener in listeners {
                group.addTask { await self.acceptConnections(listener) }
            }
        }
    }

    private func acceptConnections(_ listener: Listener) async {
        await withDiscardingTaskGroup { connections in
            do {
                try await listener.channel.executeThenClose { inbound in
                    for try await child in inbound {
                        connections.addTask { await self.serveConnection(child, transport: listener.transport) }
                    }
                }
            } catch {
                if !shutdownSignal.isFired { logger.error("accepting connections failed: \(error)") }
            }
        }
        await unserved.closeAll()
    }

    private func serveConnection(_ child: NIOAsyncChannel<LineFrame, ByteBuffer>, transport: RPCTransport) async {
        unserved.taken(child)
        let id = lastConnectionID.add(1, ordering: .relaxed).newValue
        let peer = transport == .tcp ? (child.channel.remoteAddress?.description ?? "tcp") : "unix"
        let info = RPCConnectionInfo(id: id, transport: transport, peer: peer)
        var logger = self.logger
        logger[metadataKey: "rpc.connection"] = "\(id)"
        do {
            try await child.executeThenClose { inbound, outbound in
                let writer = ReplyWriter(outbound: outbound, metrics: metrics, channel: child.channel, stallTimeout: configuration.limits.idleTimeout)
                let limit = configuration.limits.maxConnections
                guard metrics.admitConnection(limit: limit) else {
                    logger.warning("refusing connection: \(limit) connections open")
                    metrics.error("overloaded")
                    _ = try? await writer.write(RPCEnvelope.failure(id: nil, error: .overloaded("too many connections (max \(limit))")))
                    await flushAndClose(child.channel, within: .seconds(1))
                    return
                }
                defer { metrics.connectionClosed() }
                logger.debug("connection opened", metadata: ["rpc.peer": "\(peer)"])
                let frames = try? await child.channel.pipeline.handler(type: FrameActivityHandler.self).map(\.activity).get()
                let state = RPCConnectionState(info: info, authenticated: transport == .unix, frames: frames ?? FrameActivity())
                let connection = RPCConnection(state: state, dispatcher: dispatcher, writer: writer, channel: child.channel, logger: logger)
                await connection.run(inbound: inbound)
                logger.debug("connection closed")
            }
        } catch {
            logger.debug("connection error: \(error)")
        }
    }

    private func describe(_ listener: Listener) -> String {
        if let file = listener.socketFile { return file.path }
        return listener.channel.channel.localAddress?.description ?? "?"
    }
}
