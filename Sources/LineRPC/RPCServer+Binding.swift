import Logging
import NIOCore
import NIOPosix
import Synchronization

extension RPCServer {
    /// Binds the configured Unix socket and TCP listener (closing what was bound on failure).
    func bindListeners() async throws -> [Listener] {
        var listeners: [Listener] = []
        do {
            if let path = configuration.unixSocketPath {
                try UnixSocketFile.prepare(path: path)
                let channel = try await bootstrap().bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false) {
                    self.initializeConnection($0)
                }
                do {
                    let file = try UnixSocketFile.claim(path: path, mode: configuration.socketMode, group: configuration.socketGroup)
                    listeners.append(Listener(channel: channel, transport: .unix, socketFile: file))
                } catch {
                    try? await channel.channel.close()
                    throw error
                }
            }
            if let tcp = configuration.tcp {
                if !["127.0.0.1", "::1", "localhost"].contains(tcp.host) {
                    logger.warning("TCP listener on a non-loopback address; only the token protects it", metadata: ["rpc.host": "\(tcp.host)"])
                }
                let channel = try await bootstrap()
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: tcp.host, port: tcp.port) { self.initializeConnection($0) }
                listeners.append(Listener(channel: channel, transport: .tcp, socketFile: nil))
            }
        } catch {
            for listener in listeners {
                try? await listener.channel.channel.close()
                listener.socketFile?.remove()
            }
            throw error
        }
        return listeners
    }

    private func bootstrap() -> ServerBootstrap {
        let logger = self.logger
        return ServerBootstrap(group: eventLoopGroup)
            // Room for a burst of connects (the kernel caps it at net.core.somaxconn): a Unix
            // socket connect fails with EAGAIN, instead of waiting, when the backlog is full.
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptErrorHandler(logger: logger))
                }
            }
    }

    /// The per-connection pipeline: line timeout, then line framing, a count of the lines, then
    /// the async bridge.
    private func initializeConnection(_ channel: any Channel) -> EventLoopFuture<NIOAsyncChannel<LineFrame, ByteBuffer>> {
        let limits = configuration.limits
        return channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(LineTimeoutHandler(timeout: TimeAmount(limits.lineTimeout)))
            try sync.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: limits.maxLineBytes)))
            try sync.addHandler(FrameActivityHandler())
            let wrapped = try NIOAsyncChannel<LineFrame, ByteBuffer>(wrappingChannelSynchronously: channel)
            unserved.add(wrapped)
            return wrapped
        }
    }
}

/// Accepted connections not yet taken by the accept loop. NIO drops the connections still
/// buffered in a listener's stream when the listener closes or its task ends, and a dropped
/// `NIOAsyncChannel` traps ("Deinited NIOAsyncWriter without calling finish()",
/// apple/swift-nio#2813). Holding each until it is served, and closing what is left when
/// the listeners end, keeps a shutdown that races an incoming connection from crashing.
final class UnservedConnections: Sendable {
    private let channels = Mutex<[ObjectIdentifier: NIOAsyncChannel<LineFrame, ByteBuffer>]>([:])

    func add(_ channel: NIOAsyncChannel<LineFrame, ByteBuffer>) {
        channels.withLock { $0[ObjectIdentifier(channel.channel)] = channel }
    }

    /// The accept loop took it: it is served (and closed) there.
    func taken(_ channel: NIOAsyncChannel<LineFrame, ByteBuffer>) {
        _ = channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel.channel)) }
    }

    /// Closes every connection accepted but never served.
    func closeAll() async {
        let left = channels.withLock { channels in
            defer { channels = [:] }
            return Array(channels.values)
        }
        for channel in left { try? await channel.executeThenClose { _, _ in } }
    }
}

/// Keeps accept errors (EMFILE, ECONNABORTED, …) from ending the listener's inbound stream:
/// they are logged and the server keeps accepting.
final class AcceptErrorHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel

    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.warning("accept failed: \(error)")
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
