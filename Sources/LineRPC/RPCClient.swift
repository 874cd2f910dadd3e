#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import WireJSON

/// A LineRPC client over a Unix socket or TCP: concurrent calls, streams, raw lines.
///
/// Ids are assigned by the client (increasing integers), so many calls can be in flight on
/// one connection. Cancelling a calling task sends `rpc.cancel` and still waits for the
/// server's final reply (normally `-32800`, thrown as ``RPCError``).
///
/// ```swift
/// let client = try await RPCClient.connect(unixPath: "./segmentd.sock")
/// let hello = try await client.call("rpc.hello")
/// let done = try await client.call("segments.resolve", ["id": 3]) { method, params in
///     print(method, params)   // each stream notification for this call, in order
/// }
/// try await client.close()
/// ```
public final class RPCClient: Sendable {
    private let channel: any Channel
    private let writer: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let inbox: RPCClientInbox
    private let reader: Task<Void, Never>

    /// After the calling task is cancelled, how long a call waits for the server's final
    /// reply before it throws `CancellationError` itself.
    public static let cancellationGrace: Duration = .seconds(5)

    private init(
        channel: any Channel,
        writer: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        inbox: RPCClientInbox,
        reader: Task<Void, Never>
    ) {
        self.channel = channel
        self.writer = writer
        self.inbox = inbox
        self.reader = reader
    }

    deinit {
        channel.close(promise: nil)
    }

    /// Connects to a Unix socket. `maxLineBytes` bounds one received line (default 64 MiB).
    public static func connect(
        unixPath: String,
        maxLineBytes: Int = 64 << 20,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RPCClient {
        let channel = try await connecting(to: unixPath) {
            try await ClientBootstrap(group: eventLoopGroup).connect(unixDomainSocketPath: unixPath) {
                initialize($0, maxLineBytes: maxLineBytes)
            }
        }
        return try await make(channel)
    }

    /// Connects over TCP; with a `token`, also authenticates with `rpc.hello`.
    public static func connect(
        host: String,
        port: Int,
        token: String? = nil,
        maxLineBytes: Int = 64 << 20,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RPCClient {
        let channel = try await connecting(to: "\(host):\(port)") {
            try await ClientBootstrap(group: eventLoopGroup)
                .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port) { initialize($0, maxLineBytes: maxLineBytes) }
        }
        let client = try await make(channel)
        if let token {
            do {
                _ = try await client.call("rpc.hello", ["token": .string(token)])
            } catch {
                try? await client.close()
                throw error
            }
        }
        return client
    }

    /// Calls `method` and returns its result; throws ``RPCError`` for an error reply.
    public func call(_ method: String, _ params: JSONValue = .object([:])) async throws -> JSONValue {
        try await perform(method, params, onNotification: nil)
    }

    /// Calls a streaming `method`: `onNotification` receives, in order, every notification
    /// whose `params.id` is this call's id (method name and the full params, `id` included);
    /// then the final result is returned. If `onNotification` throws, the call throws that
    /// error once the final reply arrives.
    public func call(
        _ method: String,
        _ params: JSONValue,
        onNotification: @escaping @Sendable (String, JSONValue) async throws -> Void
    ) async throws -> JSONValue {
        try await perform(method, params, onNotification: onNotification)
    }

    /// Sends a notification (no id, no reply).
    public func notify(_ method: String, _ params: JSONValue = .object([:])) async throws {
        try await send(.object(["jsonrpc": "2.0", "method": .string(method), "params": params]))
    }

    /// Sends one raw line (a `\n` is added if missing). Switches the client to raw mode: every
    /// received line then goes to ``readLine()``; do not mix with ``call(_:_:)``.
    public func sendLine(_ line: String) async throws {
        inbox.enterRawMode()
        var bytes = Array(line.utf8)
        if bytes.last != 0x0A { bytes.append(0x0A) }
        try await write(ByteBuffer(bytes: bytes))
    }

    /// The next received line without its terminator, or `nil` once the connection closed.
    /// Switches to raw mode like ``sendLine(_:)``; throws `CancellationError` if cancelled.
    /// Lines that arrived earlier and were not replies to a call (an id-null error such as
    /// "too many connections") are kept, up to a bound, and returned first.
    public func readLine() async throws -> String? {
        inbox.enterRawMode()
        return try await inbox.rawLines.pop()
    }

    /// Closes the connection; pending calls fail with ``RPCClientError/connectionClosed``.
    public func close() async throws {
        channel.close(promise: nil)
        await reader.value
    }

    // MARK: Internals

    private func perform(
        _ method: String,
        _ params: JSONValue,
        onNotification: RPCClientInbox.NotificationHandler?
    ) async throws -> JSONValue {
        let id = try inbox.register(onNotification: onNotification)
        do {
            let line = JSONValue.object(["jsonrpc": "2.0", "id": .int(id), "method": .string(method), "params": params]).serializedLine()
            // Remembered so that an error reply the server cannot tie to an id (id null: the
            // line was too long, or too deeply nested to parse) still ends this call.
            inbox.sending(id, lineBytes: line.count - 1, params: params)
            try await write(ByteBuffer(bytes: line))
        } catch {
            inbox.abandon(id)
            throw error
        }
        let writer = self.writer
        let inbox = self.inbox
        return try await inbox.wait(for: id) {
            // The server still sends one final reply (normally -32800); wait for it a little,
            // but never hang on an unresponsive server.
            let cancel: JSONValue = ["jsonrpc": "2.0", "method": "rpc.cancel", "params": ["id": .int(id)]]
            Task {
                try? await writer.write(ByteBuffer(bytes: cancel.serializedLine()))
                try? await Task.sleep(for: Self.cancellationGrace)
                inbox.fail(id, with: CancellationError())
            }
        }
    }

    private func send(_ message: JSONValue) async throws {
        try await write(ByteBuffer(bytes: message.serializedLine()))
    }

    /// Writes with backpressure; a closed connection is reported as ``RPCClientError/connectionClosed``.
    private func write(_ buffer: ByteBuffer) async throws {
        do {
            try await writer.write(buffer)
        } catch let error as ChannelError {
            throw error == .ioOnClosedChannel || error == .alreadyClosed ? RPCClientError.connectionClosed : error
        } catch is NIOAsyncWriterError {
            // The reader saw the close first and finished the writer: the same closed connection.
            throw RPCClientError.connectionClosed
        }
    }

    /// Runs a connect; a failed system call becomes ``RPCClientError`` "cannot connect to
    /// TARGET: REASON" (the errno's text) instead of NIO's `connect(descriptor:addr:size:): …`.
    private static func connecting<T>(to target: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as IOError {
            throw RPCClientError("cannot connect to \(target): \(String(cString: strerror(error.errnoCode)))")
        } catch let error as NIOConnectionError {
            let reason = error.connectionErrors.last.map { ($0.error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\($0.error)" }
            throw RPCClientError("cannot connect to \(target): \(reason ?? "\(error)")")
        }
    }

    private static func initialize(
        _ channel: any Channel,
        maxLineBytes: Int
    ) -> EventLoopFuture<NIOAsyncChannel<LineFrame, ByteBuffer>> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
            return try NIOAsyncChannel<LineFrame, ByteBuffer>(wrappingChannelSynchronously: channel)
        }
    }

    /// Starts the reader task and takes the connection's writer out of its scope.
    private static func make(_ asyncChannel: NIOAsyncChannel<LineFrame, ByteBuffer>) async throws -> RPCClient {
        let inbox = RPCClientInbox()
        let (writers, handOver) = AsyncStream.makeStream(of: NIOAsyncChannelOutboundWriter<ByteBuffer>.self)
        let reader = Task {
            var failure: (any Error)?
            do {
                try await asyncChannel.executeThenClose { inbound, outbound in
                    handOver.yield(outbound)
                    handOver.finish()
                    try await inbox.consume(inbound)
                }
            } catch {
                failure = error
            }
            handOver.finish()
            inbox.close(error: failure.map { RPCClientError("connection failed: \($0)") })
        }
        var iterator = writers.makeAsyncIterator()
        guard let writer = await iterator.next() else { throw RPCClientError.connectionClosed }
        return RPCClient(channel: asyncChannel.channel, writer: writer, inbox: inbox, reader: reader)
    }
}
