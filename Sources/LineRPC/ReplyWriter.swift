import NIOCore
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
struct ReplyWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let metrics: RPCMetrics
    var channel: (any Channel)? = nil
    var stallTimeout: Duration? = nil

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
        return bytes.count
    }
}
