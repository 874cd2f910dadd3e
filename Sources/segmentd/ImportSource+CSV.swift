import Foundation
import StreamCodec
import WireJSON

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
