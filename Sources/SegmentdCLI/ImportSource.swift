import Foundation
import StreamCodec
import WireJSON

/// A fatal CLI error: printed as `Error: <message>`, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads a file (or standard input, `-`) in chunks, gunzipping on the fly when it starts with
/// the gzip magic bytes. Never holds more than one chunk (plus zlib's window) in memory.
final class ChunkReader {
    /// The file's name for messages (`standard input` for `-`).
    let path: String
    /// The file's size on disk (compressed size for .gz), for progress; 0 when unknown (stdin).
    let totalBytes: Int64
    /// Bytes read from disk so far.
    private(set) var bytesRead: Int64 = 0
    let isGzip: Bool
    let isStandardInput: Bool
    private let handle: FileHandle
    private let gunzip: GzipDecompressor?
    private var first: [UInt8]?
    private var atEnd = false
    static let chunkSize = 256 * 1024

    init(path: String) throws {
        isStandardInput = path == "-"
        self.path = isStandardInput ? "standard input" : path
        if isStandardInput {
            handle = FileHandle.standardInput
            totalBytes = 0
        } else {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw CommandFailure("\(path): no such file")
            }
            guard !isDirectory.boolValue, let handle = FileHandle(forReadingAtPath: path) else {
                throw CommandFailure("\(path): cannot open for reading")
            }
            self.handle = handle
            totalBytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
        }
        // A pipe may deliver one byte at a time: read until the magic bytes can be checked.
        var head = try Self.read(handle, Self.chunkSize, path: self.path)
        while head.count < 2 {
            let more = try Self.read(handle, Self.chunkSize, path: self.path)
            if more.isEmpty { break }
            head += more
        }
        bytesRead = Int64(head.count)
        isGzip = head.count >= 2 && head[0] == 0x1F && head[1] == 0x8B
        gunzip = isGzip ? try GzipDecompressor() : nil
        first = head
        if head.isEmpty { atEnd = true }
    }

    deinit { if !isStandardInput { try? handle.close() } }

    /// The next chunk of (decompressed) bytes, possibly empty; `nil` at the end of the file.
    func next() throws -> [UInt8]? {
        if let head = first {
            first = nil
            return try decode(head)
        }
        guard !atEnd else { return nil }
        let chunk = try Self.read(handle, Self.chunkSize, path: path)
        bytesRead += Int64(chunk.count)
        if chunk.isEmpty {
            atEnd = true
            if let gunzip, !gunzip.isFinished { throw CommandFailure("\(path): truncated gzip data (the file ends inside the compressed stream)") }
            return nil
        }
        return try decode(chunk)
    }

    private func decode(_ bytes: [UInt8]) throws -> [UInt8] {
        guard let gunzip else { return bytes }
        do {
            return try gunzip.decompress(bytes)
        } catch {
            throw CommandFailure("\(path): corrupt gzip data near byte \(bytesRead): \(error)")
        }
    }

    /// Up to `count` bytes, whatever is there: a pipe is not waited on until a whole chunk
    /// arrives (FileHandle's read would), so rows from a slow producer go out as they come.
    /// Empty at the end of the input.
    private static func read(_ handle: FileHandle, _ count: Int, path: String) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        while true {
            let n = buffer.withUnsafeMutableBytes { Foundation.read(handle.fileDescriptor, $0.baseAddress, count) }
            if n >= 0 {
                buffer.removeSubrange(n...)
                return buffer
            }
            if errno == EINTR { continue }
            throw CommandFailure("\(path): read failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// One input row: a contact document ready to send, or a row that failed before sending.
enum ImportRow {
    /// `key` is the lower-cased email (for ordering across pipelined batches); `bytes` the
    /// document's serialized size.
    case contact(line: Int, document: JSONValue, key: String?, bytes: Int)
    case failure(line: Int, message: String)

    /// The input line the row starts on.
    var line: Int {
        switch self {
        case .contact(let line, _, _, _), .failure(let line, _): return line
        }
    }
}

/// A stream of rows from a file.
protocol ImportRowSource: AnyObject {
    func next() throws -> ImportRow?
    var reader: ChunkReader { get }
}

/// The input formats `segmentd import` reads.
enum ImportFormat: String, CaseIterable {
    case csv, ndjson

    /// From the file name: `.csv`, `.ndjson` or `.jsonl`, each optionally followed by `.gz`.
    static func infer(from path: String) -> ImportFormat? {
        var name = path.lowercased()
        if name.hasSuffix(".gz") { name.removeLast(3) }
        if name.hasSuffix(".csv") { return .csv }
        if name.hasSuffix(".ndjson") || name.hasSuffix(".jsonl") { return .ndjson }
        return nil
    }
}

// MARK: NDJSON

/// One JSON object per line, sent as is. Blank lines are skipped; a line that is not a JSON
/// object (or is longer than the server accepts) fails alone.
final class NDJSONRows: ImportRowSource {
    let reader: ChunkReader
    private let maxLineBytes: Int
    private let maxDocumentBytes: Int
    private var buffer: [UInt8] = []
    private var position = 0
    private var line = 0
    private var eof = false

    init(reader: ChunkReader, maxDocumentBytes: Int) {
        self.reader = reader
        self.maxDocumentBytes = maxDocumentBytes
        // Raw lines may carry whitespace the compact form drops; beyond this they are skipped unread.
        self.maxLineBytes = max(4 * maxDocumentBytes, 4 << 20)
    }

    func next() throws -> ImportRow? {
        while true {
            guard let (bytes, tooLong) = try nextLine() else { return nil }
            line += 1
            if tooLong {
                return .failure(line: line, message: "line is too long (over \(maxLineBytes) bytes)")
            }
            if bytes.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            var content = bytes[...]
            if content.last == 13 { content = content.dropLast() }
            if line == 1, content.starts(with: [0xEF, 0xBB, 0xBF]) { content = content.dropFirst(3) }
            let value: JSONValue
            do {
                value = try JSONParser.parse(content)
            } catch {
                return .failure(line: line, message: "invalid JSON: \(error)")
            }
            guard case .object = value else {
                return .failure(line: line, message: "expected a JSON object (one contact per line), got \(value.typeName)")
            }
            let size = value.serializedLine().count
            if size > maxDocumentBytes {
                return .failure(line: line, message: "contact is too large to send (\(size) bytes; the server accepts \(maxDocumentBytes) per request)")
            }
            let key = value["email"]?.stringValue.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            return .contact(line: line, document: value, key: key, bytes: size)
        }
    }

    /// The next line without its `\n`; lines past `maxLineBytes` are skipped unread and
    /// reported as too long. `nil` at the end of input.
    private func nextLine() throws -> (ArraySlice<UInt8>, Bool)? {
        var tooLong = false
        while true {
            if let nl = buffer[position...].firstIndex(of: 10) {
                let start = position
                position = nl + 1
                return (tooLong ? [] : buffer[start..<nl], tooLong)
            }
            if eof {
                guard position < buffer.count || tooLong else { return nil }
                let rest = buffer[position...]
                position = buffer.count
                return (tooLong ? [] : rest, tooLong)
            }
            if buffer.count - position > maxLineBytes {
                tooLong = true
                buffer.removeAll(keepingCapacity: true)
                position = 0
            } else if position > 0 {
                buffer.removeFirst(position)
                position = 0
            }
            if let chunk = try reader.next() {
                buffer.append(contentsOf: chunk)
            } else {
                eof = true
            }
        }
    }
}
