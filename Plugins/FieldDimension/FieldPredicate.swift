import SegmentCore
import WireJSON

/// The test a field filter applies to one value (`nil`: the contact has none).
enum FieldTest: Sendable {
    case textEquals(String), textNotEquals(String), textContains(String), textNotContains(String)
    case numberEquals(Double), numberNotEquals(Double), greater(Double), less(Double), numberBetween(Double, Double)
    case dateEquals(TimeValue), dateNotEquals(TimeValue), after(TimeValue), before(TimeValue), dateBetween(TimeValue, TimeValue)
    case boolEquals(Bool), boolNotEquals(Bool)
    case isEmpty, isNotEmpty

    /// Text is compared lower-cased; the caller passes the lower-cased value.
    func test(_ value: FieldValue?) -> Bool {
        switch (self, value) {
        case (.isEmpty, _): return value == nil
        case (.isNotEmpty, _): return value != nil
        case (.textEquals(let x), .text(let v)?): return v == x
        case (.textNotEquals(let x), .text(let v)?): return v != x
        case (.textContains(let x), .text(let v)?): return v.utf8.contains(x.utf8)
        case (.textNotContains(let x), .text(let v)?): return !v.utf8.contains(x.utf8)
        case (.numberEquals(let x), .number(let v)?): return v == x
        case (.numberNotEquals(let x), .number(let v)?): return v != x
        case (.greater(let x), .number(let v)?): return v > x
        case (.less(let x), .number(let v)?): return v < x
        case (.numberBetween(let lo, let hi), .number(let v)?): return v >= lo && v <= hi
        case (.dateEquals(let x), .date(let v)?): return x.covers(v)
        case (.dateNotEquals(let x), .date(let v)?): return !x.covers(v)
        case (.after(let x), .date(let v)?): return x.timeIsAfter(v)
        case (.before(let x), .date(let v)?): return x.timeIsBefore(v)
        case (.dateBetween(let lo, let hi), .date(let v)?): return v >= lo.start && hi.timeIsAtOrBeforeEnd(v)
        case (.boolEquals(let x), .boolean(let v)?): return v == x
        case (.boolNotEquals(let x), .boolean(let v)?): return v != x
        case (.textNotEquals, nil), (.textNotContains, nil), (.numberNotEquals, nil), (.dateNotEquals, nil), (.boolNotEquals, nil):
            return true  // negative operators match a missing value
        default:
            return false
        }
    }
}

extension FieldTest {
    /// The test as an interval over numbers and times, for the fast column scan; `nil` for
    /// text and boolean tests. Must agree with `test(_:)` (the oracle tests check both paths).
    var range: DoubleRange? {
        switch self {
        case .numberEquals(let x): return DoubleRange(lo: x, hi: x)
        case .numberNotEquals(let x): return DoubleRange(lo: x, hi: x, negated: true, missing: true)
        case .greater(let x): return .above(x)
        case .less(let x): return .below(x)
        case .numberBetween(let lo, let hi): return DoubleRange(lo: lo, hi: hi)
        case .dateEquals(let x): return Self.span(x)
        case .dateNotEquals(let x):
            var r = Self.span(x)
            r.negated = true
            r.missing = true
            return r
        case .after(let x):
            if case .day(_, let end) = x { return DoubleRange(lo: end) }
            return .above(x.start)
        case .before(let x): return .below(x.start)
        case .dateBetween(let lo, let hi): return DoubleRange(lo: lo.start, hi: Self.span(hi).hi)
        case .isEmpty: return DoubleRange(negated: true, missing: true)
        case .isNotEmpty: return DoubleRange()
        default: return nil
        }
    }

    /// The instants a time value covers, as a closed interval.
    static func span(_ t: TimeValue) -> DoubleRange {
        switch t {
        case .instant(let x): return DoubleRange(lo: x, hi: x)
        case .day(let s, let e): return DoubleRange(lo: s, hi: e.nextDown)
        }
    }
}

/// A compiled field filter. It reads the column from the book it is given, so one compiled
/// rule serves every later snapshot.
struct FieldPredicate: ContactPredicate {
    let dimension: String
    let field: String
    let test: FieldTest
    var aspects: Set<String> { ["field:\(field)"] }

    /// The value of `field` for `slot`, text lower-cased for comparison.
    func value(slot: Int, book: Book, lowered: Bool) -> FieldValue? {
        switch field {
        case "email":
            guard book.alive.contains(slot) else { return nil }
            return .text(lowered ? book.emails[slot].lowercased() : book.emails[slot])
        case "created_at":
            guard book.alive.contains(slot) else { return nil }
            return .date(book.createdAt[slot])
        default:
            let column = FieldDimension.index(book, dimension).column(field)
            if lowered, let column, column.type == .text { return column.text.lowerValue(at: slot).map(FieldValue.text) }
            return column?.value(at: slot)
        }
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        test.test(value(slot: slot, book: book, lowered: true))
    }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        let test = self.test
        let column = FieldDimension.index(book, dimension).column(field)
        switch column?.type {
        case .text?:
            let c = column!.text
            // Each distinct value is tested once; contacts then only look up their value's answer.
            let answers = c.lower.map { test.test(.text($0)) }
            return ContactSet.build(ids: c.ids, answers: answers, missing: test.test(nil), capacity: book.slotCount)
        case .number?, .date?:
            if let range = test.range {
                return column!.fromValueBitmaps(range, capacity: book.slotCount)
                    ?? ContactSet.build(column: column!.numbers, range: range, capacity: book.slotCount)
            }
            let c = column!.numbers
            let isDate = column!.type == .date
            let missing = test.test(nil)
            return ContactSet.build(capacity: book.slotCount) { slot in
                guard slot < c.count, !c[slot].isNaN else { return missing }
                return test.test(isDate ? .date(c[slot]) : .number(c[slot]))
            }
        default:
            return ContactSet.build(capacity: book.slotCount) { matches(slot: $0, in: book, at: now) }
        }
    }

    /// Text tests look each distinct value up once; numbers and dates scan their column.
    var cost: Int { 10 }

    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        let column = FieldDimension.index(book, dimension).column(field)
        if let column, column.type == .number || column.type == .date, let range = test.range {
            return ContactSet.filter(candidates, column: column.numbers, range: range)
        }
        if let column, column.type == .text {
            let test = self.test
            let c = column.text
            let answers = c.lower.map { test.test(.text($0)) }
            return ContactSet.filter(candidates, ids: c.ids, answers: answers, missing: test.test(nil))
        }
        return resolve(in: book, at: now).intersection(candidates)
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let shown = value(slot: slot, book: book, lowered: false)
        let text = shown.map { describe(FieldDimension.json($0)) } ?? "no value"
        return shown == nil ? "\(field) has no value" : "\(field) is \(text)"
    }
}

/// A short rendering of a value for explanations and error messages.
func describe(_ value: JSONValue) -> String {
    switch value {
    case .string(let s): return "\"\(s)\""
    case .null: return "null"
    case .bool(let b): return String(b)
    case .int(let i): return String(i)
    case .double(let d): return d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d)
    case .array(let a): return "[" + a.map(describe).joined(separator: ", ") + "]"
    case .object: return "{…}"
    }
}
