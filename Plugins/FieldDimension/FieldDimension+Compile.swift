import SegmentCore
import WireJSON

extension FieldDimension {
    static let operatorsByType: [FieldType: [String]] = [
        .text: ["equals", "not_equals", "contains", "not_contains", "is_empty", "is_not_empty"],
        .number: ["equals", "not_equals", "greater_than", "less_than", "between", "is_empty", "is_not_empty"],
        .date: ["equals", "not_equals", "greater_than", "less_than", "between", "is_empty", "is_not_empty"],
        .boolean: ["equals", "not_equals", "is_empty", "is_not_empty"],
    ]

    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "field", "op", "value"])
        let field = try filter.string("field")
        guard let def = Self.index(book, name).definition(field) else {
            throw .invalidParams(path: filter.path.member("field"), "unknown field \"\(field)\"; declare it with fields.define")
        }
        let op = try filter.string("op")
        let allowed = Self.operatorsByType[def.type]!
        guard allowed.contains(op) else {
            throw .invalidParams(
                path: filter.path.member("op"),
                "operator \"\(op)\" does not fit \(def.type.rawValue) field \(field); expected one of \(allowed.joined(separator: ", "))")
        }
        return FieldPredicate(dimension: name, field: field, test: try test(op: op, type: def.type, filter: filter, time: time))
    }

    private func test(op: String, type: FieldType, filter: ParamReader, time: ISOTime) throws(SegmentError) -> FieldTest {
        let path = filter.path.member("value")
        switch op {
        case "is_empty", "is_not_empty":
            try filter.rejectValue(for: op)
            return op == "is_empty" ? .isEmpty : .isNotEmpty
        case "between":
            let items = try filter.array("value")
            guard items.count == 2 else { throw .invalidParams(path: path, "between takes [low, high], got \(items.count) values") }
            if type == .number {
                let lo = try number(items[0], path.index(0)), hi = try number(items[1], path.index(1))
                guard lo <= hi else { throw .invalidParams(path: path, "low \(describe(.double(lo))) is greater than high \(describe(.double(hi)))") }
                return .numberBetween(lo, hi)
            }
            let lo = try date(items[0], path.index(0), time), hi = try date(items[1], path.index(1), time)
            guard hi.timeIsAtOrBeforeEnd(lo.start) else { throw .invalidParams(path: path, "low is later than high") }
            return .dateBetween(lo, hi)
        default:
            break
        }
        let raw = try filter.value("value")
        switch type {
        case .text:
            guard let s = raw.stringValue else { throw .invalidParams(path: path, "expected text, got \(raw.typeName)") }
            guard !s.isEmpty else { throw .invalidParams(path: path, "empty text; use is_empty or is_not_empty") }
            let lower = s.lowercased()
            switch op {
            case "equals": return .textEquals(lower)
            case "not_equals": return .textNotEquals(lower)
            case "contains": return .textContains(lower)
            default: return .textNotContains(lower)
            }
        case .number:
            let x = try number(raw, path)
            switch op {
            case "equals": return .numberEquals(x)
            case "not_equals": return .numberNotEquals(x)
            case "greater_than": return .greater(x)
            default: return .less(x)
            }
        case .date:
            let x = try date(raw, path, time)
            switch op {
            case "equals": return .dateEquals(x)
            case "not_equals": return .dateNotEquals(x)
            case "greater_than": return .after(x)
            default: return .before(x)
            }
        case .boolean:
            guard let b = raw.boolValue else { throw .invalidParams(path: path, "expected true or false, got \(raw.typeName)") }
            return op == "equals" ? .boolEquals(b) : .boolNotEquals(b)
        }
    }

    private func number(_ raw: JSONValue, _ path: String) throws(SegmentError) -> Double {
        guard let d = raw.doubleValue, d.isFinite else { throw .invalidParams(path: path, "expected a number, got \(raw.typeName)") }
        return d
    }

    private func date(_ raw: JSONValue, _ path: String, _ time: ISOTime) throws(SegmentError) -> TimeValue {
        guard let s = raw.stringValue, let t = time.parse(s) else {
            throw .invalidParams(path: path, "expected an ISO 8601 date or time like 2026-01-31 or 2026-01-31T08:00:00Z, got \(describe(raw))")
        }
        return t
    }
}
