import Foundation
import StreamCodec
import WireJSON

/// A fatal CLI error: printed as `Error: <message>`, exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads a file in chunks, gunzipping on the fly when it starts with the gzip magic bytes.
/// Never holds more than one chunk (plus zlib's window) in memory.
final class ChunkReader {
    let path: String
    /// The file's size on disk (compressed size for .gz), for progress.
    let totalBytes: Int64
    /// Bytes read from disk so far.
    private(set) var bytesRead: Int64 = 0
    let isGzip: Bool
    private let handle: FileHandle
    private let gunzip: GzipDecompressor?
    private var first: [UInt8]?
    private var atEnd = false
    static let chunkSize = 256 * 1024

    init(path: String) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CommandFailure("\(path): no such file")
        }
        guard !isDirectory.boolValue, let handle = FileHandle(forReadingAtPath: path) else {
            throw CommandFailure("\(path): cannot open for reading")
        }
        self.handle = handle
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
        totalBytes = size
        let head = try Self.read(handle, Self.chunkSize, path: path)
        bytesRead = Int64(head.count)
        isGzip = head.count >= 2 && head[0] == 0x1F && head[1] == 0x8B
        gunzip = isGzip ? try GzipDecompressor() : nil
        first = head
        if head.isEmpty { atEnd = true }
    }

    deinit { try? handle.close() }

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

    private static func read(_ handle: FileHandle, _ count: Int, path: String) throws -> [UInt8] {
        do {
            return [UInt8](try handle.read(upToCount: count) ?? Data())
        } catch {
            throw CommandFailure("\(path): read failed: \(error.localizedDescription)")
        }
    }
}

/// One input row: a contact document ready to send, or a row that failed before sending.
enum ImportRow {
    /// `key` is the lower-cased email (for ordering across pipelined batches); `bytes` the
    /// document's serialized size.
    case contact(line: Int, document: JSONValue, key: String?, bytes: Int)
    case failure(line: Int, message: String)
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

// MARK: CSV

/// What a CSV column becomes in a contact document.
enum ImportColumn {
    case email, name, status, funnel, lost, labels, addLabels, removeLabels
    case field(name: String, type: String)
    case ignored

    static let system: [String: ImportColumn] = [
        "email": .email, "name": .name, "status": .status, "funnel": .funnel, "lost": .lost, "labels": .labels,
        "add_labels": .addLabels, "remove_labels": .removeLabels,
    ]
    /// Columns an export can contain that describe state the import cannot set.
    static let readOnly: Set<String> = ["created_at", "suppressed", "last_open_at", "last_click_at", "last_send_at"]
}

/// A custom field as `fields.list` describes it.
struct FieldInfo {
    var name: String
    var type: String
}

/// RFC 4180 rows with a header. The header is read and checked when the source is made, so
/// an unknown column fails before any row is sent.
final class CSVRows: ImportRowSource {
    let reader: ChunkReader
    let columns: [ImportColumn]
    let header: [String]
    private let maxDocumentBytes: Int
    private var parser = CSV.Reader()
    private var ready: [(line: Int, fields: [String])] = []
    private var readyIndex = 0
    private var eof = false

    init(reader: ChunkReader, fields: [FieldInfo], ignoring: Set<String>, maxDocumentBytes: Int) throws {
        self.reader = reader
        self.maxDocumentBytes = maxDocumentBytes
        ready = []
        var headerRecord: [String]?
        while headerRecord == nil {
            if let chunk = try reader.next() {
                ready = parser.feed(chunk)
            } else {
                eof = true
                ready = parser.finish()
                if ready.isEmpty { throw CommandFailure("\(reader.path): the file is empty; a CSV import needs a header row (email, name, …)") }
            }
            if let first = ready.first {
                headerRecord = first.fields
                readyIndex = 1
            }
        }
        var names = headerRecord!.map { $0.trimmingCharacters(in: .whitespaces) }
        if let first = names.first, first.hasPrefix("\u{FEFF}") { names[0] = String(first.dropFirst()) }
        header = names
        columns = try Self.map(header: names, fields: fields, ignoring: ignoring, path: reader.path)
    }

    static func map(header: [String], fields: [FieldInfo], ignoring: Set<String>, path: String) throws -> [ImportColumn] {
        var columns: [ImportColumn] = []
        var unknown: [String] = []
        var readOnly: [String] = []
        var seen: [String: Int] = [:]
        for (i, name) in header.enumerated() {
            if name.isEmpty { throw CommandFailure("\(path): column \(i + 1) of the header has no name") }
            if let before = seen[name.lowercased()] {
                throw CommandFailure("\(path): column \"\(name)\" appears twice in the header (columns \(before + 1) and \(i + 1))")
            }
            seen[name.lowercased()] = i
            if ignoring.contains(name) || ignoring.contains(name.lowercased()) {
                columns.append(.ignored)
            } else if let system = ImportColumn.system[name.lowercased()] {
                columns.append(system)
            } else if let field = fields.first(where: { $0.name == name })
                ?? Self.unique(fields.filter { $0.name.lowercased() == name.lowercased() })
            {
                columns.append(.field(name: field.name, type: field.type))
            } else if ImportColumn.readOnly.contains(name.lowercased()) {
                readOnly.append(name)
                columns.append(.ignored)
            } else {
                unknown.append(name)
                columns.append(.ignored)
            }
        }
        guard columns.contains(where: { if case .email = $0 { true } else { false } }) else {
            throw CommandFailure("\(path): the header has no email column (columns: \(header.joined(separator: ", ")))")
        }
        var problems: [String] = []
        if !unknown.isEmpty {
            let defined = fields.map(\.name)
            let list = unknown.map { "\"\($0)\"" }.joined(separator: ", ")
            let example = JSONValue.object(["name": .string(unknown[0]), "type": "text"]).serialized()
            problems.append(
                "unknown column\(unknown.count == 1 ? "" : "s") \(list): a column must be email, name, status, funnel, lost, labels, "
                    + "add_labels, remove_labels or a custom field defined on the server "
                    + "(defined: \(defined.isEmpty ? "none" : defined.joined(separator: ", "))). "
                    + "Define \(unknown.count == 1 ? "it" : "each") first, e.g. segmentd call fields.define '\(example)' "
                    + "(type text, number, date or boolean), or skip \(unknown.count == 1 ? "it" : "them") with --ignore-column")
        }
        if !readOnly.isEmpty {
            problems.append(
                "read-only column\(readOnly.count == 1 ? "" : "s") \(readOnly.joined(separator: ", ")) cannot be imported; skip with --ignore-column")
        }
        if !problems.isEmpty { throw CommandFailure("\(path): " + problems.joined(separator: "; ") + ". Nothing was imported.") }
        return columns
    }

    private static func unique(_ fields: [FieldInfo]) -> FieldInfo? { fields.count == 1 ? fields[0] : nil }

    func next() throws -> ImportRow? {
        while readyIndex >= ready.count {
            guard !eof else { return nil }
            readyIndex = 0
            if let chunk = try reader.next() {
                ready = parser.feed(chunk)
            } else {
                eof = true
                let unterminated = parser.isInsideQuotes
                ready = parser.finish()
                if unterminated, let last = ready.first {
                    ready = []
                    return .failure(line: last.line, message: "unterminated quoted field (a \" opened on this row is never closed)")
                }
            }
        }
        let record = ready[readyIndex]
        readyIndex += 1
        if readyIndex == ready.count { ready = []; readyIndex = 0 }
        return row(record.line, record.fields)
    }

    private func row(_ line: Int, _ fields: [String]) -> ImportRow {
        guard fields.count == columns.count else {
            return .failure(line: line, message: "expected \(columns.count) fields as in the header, got \(fields.count)")
        }
        var document: [String: JSONValue] = [:]
        var custom: [String: JSONValue] = [:]
        var key: String?
        for (column, raw) in zip(columns, fields) {
            guard !raw.isEmpty else { continue }
            switch column {
            case .ignored:
                continue
            case .email:
                let email = raw.trimmingCharacters(in: .whitespaces)
                key = email.lowercased()
                document["email"] = .string(email)
            case .name:
                document["name"] = .string(raw)
            case .status:
                document["status"] = .string(raw.trimmingCharacters(in: .whitespaces))
            case .funnel:
                document["funnel"] = .string(raw.trimmingCharacters(in: .whitespaces))
            case .lost:
                guard let b = Self.boolean(raw) else {
                    return .failure(line: line, message: "lost: expected true or false, got \(JSONValue.string(raw).serialized())")
                }
                document["lost"] = .bool(b)
            case .labels, .addLabels, .removeLabels:
                let labels = raw.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                let name = if case .labels = column { "labels" } else if case .addLabels = column { "add_labels" } else { "remove_labels" }
                document[name] = .array(labels.map { .string($0) })
            case .field(let name, let type):
                switch type {
                case "number":
                    let text = raw.trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { continue }
                    guard let n = Self.number(text) else {
                        return .failure(line: line, message: "\(name): expected a number, got \(JSONValue.string(raw).serialized())")
                    }
                    custom[name] = n
                case "boolean":
                    let text = raw.trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { continue }
                    guard let b = Self.boolean(text) else {
                        return .failure(line: line, message: "\(name): expected true/false, 1/0 or yes/no, got \(JSONValue.string(raw).serialized())")
                    }
                    custom[name] = .bool(b)
                case "date":
                    let text = raw.trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { continue }
                    custom[name] = .string(text)
                default:
                    custom[name] = .string(raw)
                }
            }
        }
        if !custom.isEmpty { document["fields"] = .object(custom) }
        let value = JSONValue.object(document)
        let size = value.serializedLine().count
        if size > maxDocumentBytes {
            return .failure(line: line, message: "row is too large to send (\(size) bytes; the server accepts \(maxDocumentBytes) per request)")
        }
        return .contact(line: line, document: value, key: key, bytes: size)
    }

    static func boolean(_ text: String) -> Bool? {
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: return nil
        }
    }

    /// A decimal number (integers stay integers); no hex, `inf` or `nan`.
    static func number(_ text: String) -> JSONValue? {
        guard text.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == 46 || $0 == 45 || $0 == 43 || $0 == 101 || $0 == 69 }),
            text.utf8.contains(where: { $0 >= 48 && $0 <= 57 })
        else { return nil }
        if let i = Int64(text) { return .int(i) }
        guard let d = Double(text), d.isFinite else { return nil }
        return .double(d)
    }
}
