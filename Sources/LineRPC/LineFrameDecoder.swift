import NIOCore

/// One framed unit of input: a complete line, or the notice that a line was too long.
public enum LineFrame: Sendable, Equatable {
    /// The bytes of one line without its `\n` or `\r\n` terminator (never empty).
    case line(ByteBuffer)
    /// A line longer than the limit was discarded (its bytes were never buffered in full).
    case oversized
}

/// Splits a byte stream into lines with a hard length limit and bounded memory.
///
/// `\n` ends a line and a `\r` before it is dropped; empty and whitespace-only lines are
/// skipped. When more than `maxLineBytes` (+1 for a possible `\r`) arrive without a newline,
/// one ``LineFrame/oversized`` is emitted and the rest of that line is thrown away as it
/// arrives, so the buffer never holds more than one limit's worth. (NIO's
/// `LineBasedFrameDecoder` has no maximum.) A partial line at EOF is dropped.
///
/// ```swift
/// try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 1 << 20)))
/// ```
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = LineFrame

    public let maxLineBytes: Int
    /// Inside an oversized line: drop bytes up to and including the next newline.
    private var discarding = false
    /// How many readable bytes were already searched for a newline (no quadratic rescans).
    private var scanned = 0

    public init(maxLineBytes: Int) {
        precondition(maxLineBytes > 0, "maxLineBytes must be positive")
        self.maxLineBytes = maxLineBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = nextFrame(&buffer) else { return .needMoreData }
        if let frame { context.fireChannelRead(Self.wrapInboundOut(frame)) }
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if state == .needMoreData {
            // A partial line at EOF can never complete.
            buffer.moveReaderIndex(to: buffer.writerIndex)
            scanned = 0
        }
        return state
    }

    /// The framing core, independent of a channel: `nil` means "need more data"; `.some(nil)`
    /// means progress was made without a frame (a skipped empty line or discarded bytes).
    mutating func nextFrame(_ buffer: inout ByteBuffer) -> LineFrame?? {
        let newline = buffer.withUnsafeReadableBytes { bytes -> Int? in
            var index = scanned
            while index < bytes.count {
                if bytes[index] == 0x0A { return index }
                index &+= 1
            }
            return nil
        }
        guard let newline else {
            if discarding {
                buffer.moveReaderIndex(to: buffer.writerIndex)
                scanned = 0
                return nil
            }
            if buffer.readableBytes > maxLineBytes + 1 {
                discarding = true
                buffer.moveReaderIndex(to: buffer.writerIndex)
                scanned = 0
                return .some(.oversized)
            }
            scanned = buffer.readableBytes
            return nil
        }
        scanned = 0
        if discarding {
            discarding = false
            buffer.moveReaderIndex(forwardBy: newline + 1)
            return .some(nil)
        }
        var length = newline
        if length > 0, buffer.getInteger(at: buffer.readerIndex + length - 1, as: UInt8.self) == 0x0D {
            length -= 1
        }
        if length > maxLineBytes {
            buffer.moveReaderIndex(forwardBy: newline + 1)
            return .some(.oversized)
        }
        let line = buffer.getSlice(at: buffer.readerIndex, length: length)!
        buffer.moveReaderIndex(forwardBy: newline + 1)
        return .some(Self.isBlank(line) ? nil : .line(line))
    }

    /// Whether a line has only spaces and tabs (stops at the first other byte: O(1) for JSON).
    private static func isBlank(_ line: ByteBuffer) -> Bool {
        line.withUnsafeReadableBytes { bytes in
            for byte in bytes where byte != 0x20 && byte != 0x09 && byte != 0x0D { return false }
            return true
        }
    }
}
