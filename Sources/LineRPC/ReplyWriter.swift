import NIOCore
import Synchronization
import WireJSON

/// Writes one JSON message per line to a connection, with backpressure, counting bytes.
///
/// Safe to use from many tasks at once: each message is one buffer, so lines never interleave.
///
/// A peer that stops reading makes writes wait (the server never buffers more than the socket
/// and one message). So that such a peer cannot hold its connection, its in-flight requests and
/// their snapshots forever, a write that has waited `stallTimeout` closes the connection
/// (the server passes ``RPCLimits/idleTimeout``: a connection that takes no bytes for that
/// long is as idle as one that sends none). Closing fails the waiting write, which cancels
/// the connection's requests.
///
/// A peer that reads as fast as the server writes never makes a write wait, and then each
/// write only queues a task on the event loop. NIO's event loop runs its queued tasks until
/// there are none before it looks at its sockets again, so a stream writing small messages
/// in a tight loop could keep it from reading the connection's next line — an `rpc.cancel`
/// for that very stream took effect only after the whole stream, now and then. Every
/// ``pacingInterval`` writes therefore wait for the event loop to catch up.
struct ReplyWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let metrics: RPCMetrics
    var channel: (any Channel)? = nil
    var stallTimeout: Duration? = nil
    private let written = WriteCount()

    /// Writes between two waits for the event loop.
    static let pacingInterval = 64

    init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, metrics: RPCMetrics, channel: (any Channel)? = nil, stallTimeout: Duration? = nil) {
        self.outbound = outbound
        self.metrics = metrics
        self.channel = channel
        self.stallTimeout = stallTimeout
    }

    /// Suspends while the channel is not writable; throws once the connection is gone.
    /// Returns the bytes written (the line and its terminator).
    @discardableResult
    func write(_ message: JSONValue) async throws -> Int {
        let bytes = message.serializedLine()
        metrics.bytesOut(bytes.count)
        guard let channel, let stallTimeout else {
            try await outbound.write(ByteBuffer(bytes: bytes))
            return bytes.count
        }
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(stallTimeout)) { channel.close(promise: nil) }
        defer { timer.cancel() }
        try await outbound.write(ByteBuffer(bytes: bytes))
        if written.next() % Self.pacingInterval == 0 {
            // Runs after the writes queued before it: the loop has emptied its queue once
            // and so looks at its sockets (reads) before it runs what is queued after.
            try await channel.eventLoop.submit {}.get()
        }
        return bytes.count
    }
}

/// How many messages a ``ReplyWriter`` wrote.
private final class WriteCount: Sendable {
    private let count = Atomic<Int>(0)
    func next() -> Int { count.add(1, ordering: .relaxed).newValue }
}
