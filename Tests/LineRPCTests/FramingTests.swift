import NIOCore
import NIOEmbedded
import TestThreads
import Testing

@testable import LineRPC

/// The line decoder and the partial-line timeout, driven through `EmbeddedChannel`.
@Suite(.ownThreads) struct FramingTests {
    private func makeChannel(maxLineBytes: Int = 16) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
        return channel
    }

    private func write(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    /// Every frame the decoder has produced so far, lines as strings and "<oversized>".
    private func frames(_ channel: EmbeddedChannel) throws -> [String] {
        var result: [String] = []
        while let frame = try channel.readInbound(as: LineFrame.self) {
            switch frame {
            case .line(let buffer): result.append(String(buffer: buffer))
            case .oversized: result.append("<oversized>")
            }
        }
        return result
    }

    @Test func linesSplitAcrossReads() throws {
        let channel = try makeChannel(maxLineBytes: 64)
        try write(channel, "{\"a\"")
        #expect(try frames(channel).isEmpty)
        try write(channel, ":1}\n{\"b\":2}\n{\"c\"")
        #expect(try frames(channel) == ["{\"a\":1}", "{\"b\":2}"])
        try write(channel, ":3}")
        try write(channel, "\n")
        #expect(try frames(channel) == ["{\"c\":3}"])
        _ = try channel.finish()
    }

    @Test func manyLinesInOneRead() throws {
        let channel = try makeChannel(maxLineBytes: 64)
        try write(channel, (0..<50).map { "{\"i\":\($0)}\n" }.joined())
        #expect(try frames(channel) == (0..<50).map { "{\"i\":\($0)}" })
        _ = try channel.finish()
    }

    @Test func crlfAndEmptyLines() throws {
        let channel = try makeChannel()
        try write(channel, "a\r\n\n\r\n  \t \n\r")
        try write(channel, "\nb\n")
        #expect(try frames(channel) == ["a", "b"])
        _ = try channel.finish()
    }

    @Test func lineOfExactlyTheLimitIsAccepted() throws {
        let channel = try makeChannel(maxLineBytes: 16)
        let exact = String(repeating: "x", count: 16)
        try write(channel, exact + "\n" + exact + "\r\n")
        try write(channel, String(repeating: "y", count: 16))
        try write(channel, "\r")
        try write(channel, "\n")
        #expect(try frames(channel) == [exact, exact, String(repeating: "y", count: 16)])
        try write(channel, String(repeating: "z", count: 17) + "\n")
        #expect(try frames(channel) == ["<oversized>"])
        _ = try channel.finish()
    }

    @Test func oversizedLineIsDiscardedAndTheNextLineWorks() throws {
        let channel = try makeChannel(maxLineBytes: 16)
        try write(channel, String(repeating: "x", count: 40))
        #expect(try frames(channel) == ["<oversized>"])
        // The rest of that line is dropped as it arrives: no second error.
        for _ in 0..<10 { try write(channel, String(repeating: "x", count: 100)) }
        #expect(try frames(channel).isEmpty)
        try write(channel, "tail\n{\"ok\":1}\n")
        #expect(try frames(channel) == ["{\"ok\":1}"])
        // An oversized line that arrives complete in one read.
        try write(channel, String(repeating: "y", count: 30) + "\nnext\n")
        #expect(try frames(channel) == ["<oversized>", "next"])
        _ = try channel.finish()
    }

    @Test func bufferNeverGrowsBeyondOneLimit() {
        var decoder = LineFrameDecoder(maxLineBytes: 1024)
        var buffer = ByteBuffer()
        var oversized = 0
        var largest = 0
        let chunk = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<10_000 {  // 10 MB without a newline
            buffer.writeBytes(chunk)
            while let frame = decoder.nextFrame(&buffer) {
                if frame == .oversized { oversized += 1 }
            }
            largest = max(largest, buffer.readableBytes)
        }
        #expect(oversized == 1)
        #expect(largest <= 1025 + chunk.count)
        buffer.writeString("end\n{}\n")
        var lines: [String] = []
        while let frame = decoder.nextFrame(&buffer) {
            if case .line(let line)? = frame { lines.append(String(buffer: line)) }
        }
        #expect(lines == ["{}"])
    }

    @Test func partialLineAtEOFIsDropped() throws {
        let channel = try makeChannel()
        try write(channel, "done\npartial")
        #expect(try frames(channel) == ["done"])
        _ = try channel.finish()
        #expect(try channel.readInbound(as: LineFrame.self) == nil)
    }

    @Test func partialLineTimeoutClosesTheConnection() throws {
        let channel = EmbeddedChannel(handler: LineTimeoutHandler(timeout: .seconds(30)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "{\"slow"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        try channel.writeInbound(ByteBuffer(string: "loris"))  // still the same line: clock keeps running
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func completeLinesNeverTimeOut() throws {
        let channel = EmbeddedChannel(handler: LineTimeoutHandler(timeout: .seconds(30)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "{\"a\":"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        try channel.writeInbound(ByteBuffer(string: "1}\n{\"b\""))  // a new partial line starts now
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        #expect(channel.isActive)
        try channel.writeInbound(ByteBuffer(string: ":2}\n"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}
