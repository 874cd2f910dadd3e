import Foundation
import StreamCodec
import WireJSON

/// RFC 4180 rows with a header. The header is read and checked when the source is made, so
/// an unknown column fails before any row is sent.
final class CSVRows: ImportRowSource {
    let reader: ChunkReader
    private(set) var header: [String] = []
    private(set) var outputs: [Output] = []
    /// Fields `--define-fields` adds: define them on the server before sending any row.
    private(set) var fieldsToDefine: [FieldInfo] = []
    private let labelSeparator: Character
    private let maxDocumentBytes: Int
    private var parser = CSV.Reader()
    /// Records parsed but not yet returned (the sample for `infer` waits here too).
    private var queue: [(line: Int, fields: [String])] = []
    private var head = 0
    /// The input's first bytes until a byte order mark can be told apart; nil once checked.
    private var start: [UInt8]? = []
    /// The line of a last record left inside an unterminated quote.
    private var unterminatedLine: Int?
    private var eof = false

    init(
        reader: ChunkReader, fields: [FieldInfo], ignoring: Set<String>, maps: [ColumnMap] = [], labelSeparator: Character = ";",
        defineFields: DefineFields? = nil, maxDocumentBytes: Int
    ) throws {
        self.reader = reader
        self.maxDocumentBytes = maxDocumentBytes
        self.labelSeparator = labelSeparator
        while queue.isEmpty {
            guard try fill() else {
                throw CommandFailure("\(reader.path): the file is empty; a CSV import needs a header row (email, name, …)")
            }
        }
        header = queue[0].fields.map { $0.trimmingCharacters(in: .whitespaces) }
        head = 1
        var (outputs, newFields) = try Self.plan(
            header: header, fields: fields, ignoring: ignoring, maps: maps, defineFields: defineFields, path: reader.path)
        if defineFields == .infer, !newFields.isEmpty {
            while queue.count - head < DefineFields.sampleRows, try fill() {}
            let sample = queue[head...].prefix(DefineFields.sampleRows).filter { $0.fields.count == header.count }.map(\.fields)
            for i in newFields {
                guard case .field(let name, _) = outputs[i].column else { continue }
                outputs[i].column = .field(name: name, type: Self.inferType(sample.map { Self.value(of: outputs[i], in: $0) }))
            }
        }
        self.outputs = outputs
        fieldsToDefine = newFields.compactMap { i in
            if case .field(let name, let type) = outputs[i].column { FieldInfo(name: name, type: type) } else { nil }
        }
    }

    /// Reads one more chunk into the queue; false once the input is done.
    private func fill() throws -> Bool {
        guard !eof else { return false }
        if head > 0, head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        }
        if let chunk = try reader.next() {
            queue += parser.feed(withoutByteOrderMark(chunk, atEnd: false))
        } else {
            eof = true
            queue += parser.feed(withoutByteOrderMark([], atEnd: true))
            let unterminated = parser.isInsideQuotes
            let rest = parser.finish()
            if unterminated, let last = rest.first { unterminatedLine = last.line } else { queue += rest }
        }
        return true
    }

    /// Drops a UTF-8 byte order mark before the parser sees it: left in, it would make the
    /// quote that opens a quoted first column an ordinary character of its name.
    private func withoutByteOrderMark(_ chunk: [UInt8], atEnd: Bool) -> [UInt8] {
        guard var pending = start else { return chunk }
        pending += chunk
        if pending.count < 3 && !atEnd {
            start = pending
            return []
        }
        start = nil
        return pending.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(pending.dropFirst(3)) : pending
    }

    func next() throws -> ImportRow? {
        while head >= queue.count {
            guard try fill() else {
                guard let line = unterminatedLine else { return nil }
                unterminatedLine = nil
                return .failure(line: line, message: "unterminated quoted field (a \" opened on this row is never closed)")
            }
        }
        let record = queue[head]
        head += 1
        return row(record.line, record.fields)
    }

    private func row(_ line: Int, _ fields: [String]) -> ImportRow {
        guard fields.count == header.count else {
            return .failure(line: line, message: "expected \(header.count) fields as in the header, got \(fields.count)")
        }
        var document: [String: JSONValue] = [:]
        var custom: [String: JSONValue] = [:]
        var key: String?
        for output in outputs {
            let column = output.column
            let raw = Self.value(of: output, in: fields)
            guard !raw.isEmpty else { continue }
            switch column {
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
                let labels = Self.labels(raw, separator: labelSeparator)
                document[column.target] = .array(labels.map { .string($0) })
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

    /// `"vip", "new, 2024"` with separator `,` → `vip`, `new, 2024`: a tag in double quotes
    /// may hold the separator (`""` inside is a quote); spaces around tags (inside their
    /// quotes too) and empty tags go.
    static func labels(_ raw: String, separator: Character) -> [String] {
        var labels: [String] = []
        var current = ""
        var quoted = false
        var inQuotes = false
        var chars = raw.makeIterator()
        func finish() {
            let label = current.trimmingCharacters(in: .whitespaces)
            if !label.isEmpty { labels.append(label) }
            current = ""
            quoted = false
        }
        while let c = chars.next() {
            if inQuotes {
                if c == "\"" {
                    inQuotes = false
                } else {
                    current.append(c)
                }
            } else if c == separator {
                finish()
            } else if c == "\"" {
                // A quote opens a tag only at its start; `""` in a quoted tag is a quote.
                if quoted {
                    current.append("\"")
                    inQuotes = true
                } else if current.trimmingCharacters(in: .whitespaces).isEmpty {
                    current = ""
                    quoted = true
                    inQuotes = true
                } else {
                    current.append(c)
                }
            } else if !quoted || !c.isWhitespace {
                current.append(c)
            }
        }
        finish()
        return labels
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
