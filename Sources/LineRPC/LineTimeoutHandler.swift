import NIOCore

/// Closes a connection whose unterminated line has been pending longer than a timeout.
///
/// Sits before ``LineFrameDecoder`` and looks only at where the last `\n` of each read falls:
/// a read ending in `\n` completes everything; a read with a `\n` elsewhere starts a new partial
/// line now; a read without one continues the current partial line (its clock keeps running).
/// This stops slow-loris clients that trickle a line forever without hurting clients that
/// send large lines at a normal pace.
final class LineTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        if buffer.readableBytes > 0 {
            let lastNewline = buffer.withUnsafeReadableBytes { bytes -> Int? in
                var index = bytes.count
                while index > 0 {
                    index -= 1
                    if bytes[index] == 0x0A { return index }
                }
                return nil
            }
            switch lastNewline {
            case .some(let index) where index == buffer.readableBytes - 1:
                cancelTimer()
            case .some:
                cancelTimer()
                startTimer(context: context)
            case .none:
                if timer == nil { startTimer(context: context) }
            }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    private func startTimer(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            context.close(promise: nil)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}
