import CZlib

/// A gzip error from zlib, with its code.
public struct GzipError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var message: String
    public var description: String { "gzip: \(message) (zlib \(code))" }
}

/// Streaming gzip compression: feed bytes, take compressed bytes as they come.
///
/// ```swift
/// let gz = try GzipCompressor(level: 1)
/// var out = try gz.compress(Array("hello".utf8))
/// out += try gz.finish()
/// ```
public final class GzipCompressor {
    private var stream = z_stream()
    private var finished = false

    /// `level` 1 (fastest) to 9 (smallest); streams default to 1: exports are throughput-bound.
    public init(level: Int32 = 1) throws {
        // windowBits 15 + 16: a gzip header and trailer (CRC-32 and length) around deflate.
        let rc = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw GzipError(code: rc, message: "cannot initialise deflate") }
    }

    deinit { deflateEnd(&stream) }

    /// Compresses `input`; returns whatever compressed bytes are ready (possibly none).
    public func compress(_ input: [UInt8]) throws -> [UInt8] { try run(input, flush: Z_NO_FLUSH) }

    /// Compresses `input` and flushes, so everything given so far can be decoded by the reader.
    public func flush(_ input: [UInt8] = []) throws -> [UInt8] { try run(input, flush: Z_SYNC_FLUSH) }

    /// Ends the stream: the remaining bytes and the gzip trailer.
    public func finish() throws -> [UInt8] {
        guard !finished else { return [] }
        finished = true
        return try run([], flush: Z_FINISH)
    }

    private func run(_ input: [UInt8], flush: Int32) throws -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        try input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            repeat {
                let produced = try chunk.withUnsafeMutableBufferPointer { outBuf -> Int in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    let rc = deflate(&stream, flush)
                    guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else { throw GzipError(code: rc, message: "deflate failed") }
                    return outBuf.count - Int(stream.avail_out)
                }
                output.append(contentsOf: chunk[0..<produced])
            } while stream.avail_out == 0 || stream.avail_in > 0
        }
        stream.next_in = nil
        return output
    }
}

/// Streaming gzip decompression (concatenated members are accepted).
public final class GzipDecompressor {
    private var stream = z_stream()
    public private(set) var isFinished = false

    public init() throws {
        let rc = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw GzipError(code: rc, message: "cannot initialise inflate") }
    }

    deinit { inflateEnd(&stream) }

    /// Decompresses `input`; returns the bytes it yields.
    public func decompress(_ input: [UInt8]) throws -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        try input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while stream.avail_in > 0 || !isFinished {
                let (produced, rc) = chunk.withUnsafeMutableBufferPointer { outBuf -> (Int, Int32) in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    let rc = inflate(&stream, Z_NO_FLUSH)
                    return (outBuf.count - Int(stream.avail_out), rc)
                }
                output.append(contentsOf: chunk[0..<produced])
                if rc == Z_STREAM_END {
                    if stream.avail_in == 0 { isFinished = true; break }
                    inflateReset(&stream)  // another gzip member follows
                    continue
                }
                if rc == Z_BUF_ERROR || (rc == Z_OK && produced == 0 && stream.avail_in == 0) { break }
                guard rc == Z_OK else { throw GzipError(code: rc, message: "corrupt gzip data") }
            }
        }
        stream.next_in = nil
        return output
    }
}
