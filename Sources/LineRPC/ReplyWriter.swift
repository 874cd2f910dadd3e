import NIOCore
import WireJSON

/// Writes one JSON message per line to a connection, with backpressure, counting bytes.
///
/// Safe to use from many tasks at once: each message is one buffer, so lines never interleave.
struct ReplyWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let stats: StatisticsRecorder

    /// Suspends while the channel is not writable; throws once the connection is gone.
    func write(_ message: JSONValue) async throws {
        let bytes = message.serializedLine()
        stats.bytesOut(bytes.count)
        try await outbound.write(ByteBuffer(bytes: bytes))
    }
}
