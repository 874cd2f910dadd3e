import NIOCore
import Synchronization

/// Counts the lines a connection has received, as the event loop decodes them, so that the
/// idle timeout never closes a connection whose request has arrived but not been handled yet.
///
/// On a loaded machine a connection's task can take longer than the idle timeout to get to a
/// line that the event loop has already read; judged by handled lines alone, such a
/// connection looked idle and was closed with its request unread.
final class FrameActivity: Sendable {
    private let received = Atomic<Int>(0)
    private let handled = Atomic<Int>(0)

    /// On the event loop, for each decoded line.
    func frameReceived() { received.add(1, ordering: .relaxed) }

    /// By the connection's task, once it has handled a line (answered it or started it).
    func frameHandled() { handled.add(1, ordering: .relaxed) }

    /// Whether a received line waits to be handled.
    var hasUnhandledFrames: Bool { received.load(ordering: .relaxed) > handled.load(ordering: .relaxed) }
}

/// Sits after the line decoder and counts what it passes on (see ``FrameActivity``).
final class FrameActivityHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = LineFrame
    typealias InboundOut = LineFrame

    let activity = FrameActivity()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.frameReceived()
        context.fireChannelRead(data)
    }
}
