import SegmentCore
import StreamCodec
import WireJSON

/// The output format of a resolution.
public enum RowFormat: String, Sendable {
    case ndjson, csv
}

/// A validated resolution: one snapshot, its member set and the column readers. Everything
/// that can be wrong (segment, columns, format) is checked when the plan is made, before
/// any row is sent.
public struct ResolvePlan: Sendable {
    public let book: Book
    public let members: ContactSet
    public let columns: [String]
    public let format: RowFormat
    public let asOf: Double
    let readers: [ColumnReader]

    public var rowCount: Int { members.count }

    /// The CSV header line (empty for NDJSON).
    public func header() -> [UInt8] {
        guard format == .csv else { return [] }
        var out: [UInt8] = []
        CSV.appendRecord(columns, to: &out)
        return out
    }

    /// Encodes the given slots as NDJSON lines or CSV records.
    public func encode(_ slots: ArraySlice<Int>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(slots.count * 64 * max(1, columns.count / 2))
        for slot in slots {
            switch format {
            case .ndjson:
                rowObject(slot).write(into: &out)
                out.append(10)
            case .csv:
                CSV.appendRecord(readers.map { Self.csvField($0.read(slot)) }, to: &out)
            }
        }
        return out
    }

    /// One row as a JSON object, for streams that carry rows as JSON.
    public func rowObject(_ slot: Int) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for (name, reader) in zip(columns, readers) { o[name] = reader.read(slot) }
        return .object(o)
    }

    /// A JSON value as one CSV field: null is empty, a list joins with ";".
    static func csvField(_ value: JSONValue) -> String {
        switch value {
        case .null: return ""
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case .array(let items): return items.map(csvField).joined(separator: ";")
        case .object: return value.serialized()
        }
    }
}

extension Engine {
    /// Plans a resolution of a stored segment (`id`) or an ad-hoc rule on the current snapshot.
    public func plan(
        segment id: Int64? = nil, filters: JSONValue? = nil, audience: Audience = .send, columns: [String]? = nil, format: RowFormat = .ndjson
    ) throws(SegmentError) -> ResolvePlan {
        let book = snapshot
        let rule: CompiledRule
        if let id {
            rule = try compile(filters: try segment(id: id, in: book).filters, book: book)
        } else {
            rule = try compile(filters: filters ?? .array([]), book: book)
        }
        let columns = columns ?? registry.defaultColumns
        guard !columns.isEmpty else { throw .invalidParams(path: "columns", "give at least one column") }
        var readers: [ColumnReader] = []
        for (i, name) in columns.enumerated() {
            guard let reader = columnReader(name, book: book) else {
                throw .invalidParams(path: "columns".index(i), "unknown column \"\(name)\"; columns are email, created_at, suppressed, and \(availableColumns(book).joined(separator: ", "))")
            }
            readers.append(reader)
        }
        return ResolvePlan(
            book: book, members: members(rule: rule, audience: audience, book: book), columns: columns, format: format,
            asOf: now, readers: readers)
    }

    func columnReader(_ name: String, book: Book) -> ColumnReader? {
        switch name {
        case "email": return ColumnReader { .string(book.emails[$0]) }
        case "created_at": return ColumnReader { .string(ISOTime.format(book.createdAt[$0])) }
        case "suppressed": return ColumnReader { .bool(book.suppressed.contains($0)) }
        default: return registry.providers.lazy.compactMap { $0.column(name, book: book) }.first
        }
    }

    /// The columns the providers offer (for error messages).
    func availableColumns(_ book: Book) -> [String] {
        registry.providers.flatMap(\.columnNames)
    }
}
