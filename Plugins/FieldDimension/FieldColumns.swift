import SegmentCore

/// The type a custom field is declared with.
public enum FieldType: String, Sendable, CaseIterable {
    case text, number, date, boolean
}

/// A text column, dictionary-encoded: each distinct value is stored (and lower-cased) once,
/// so a `contains` filter tests each distinct value once rather than each contact.
struct TextColumn: Sendable {
    static let missing: Int32 = -1
    var ids: [Int32] = []
    var values: [String] = []
    var lower: [String] = []
    var idOf: [String: Int32] = [:]

    func value(at slot: Int) -> String? {
        guard slot < ids.count, ids[slot] != Self.missing else { return nil }
        return values[Int(ids[slot])]
    }

    func lowerValue(at slot: Int) -> String? {
        guard slot < ids.count, ids[slot] != Self.missing else { return nil }
        return lower[Int(ids[slot])]
    }

    mutating func set(_ value: String?, at slot: Int) {
        if slot >= ids.count { ids.append(contentsOf: repeatElement(Self.missing, count: slot + 1 - ids.count)) }
        guard let value else {
            ids[slot] = Self.missing
            return
        }
        if let id = idOf[value] {
            ids[slot] = id
        } else {
            let id = Int32(values.count)
            values.append(value)
            lower.append(value.lowercased())
            idOf[value] = id
            ids[slot] = id
        }
    }
}

/// One field's values for every slot.
enum FieldColumn: Sendable {
    case text(TextColumn)
    /// Numbers and dates (seconds since 1970); NaN where the contact has no value.
    case number([Double])
    case date([Double])
    /// 0 false, 1 true, 2 no value.
    case boolean([UInt8])

    init(type: FieldType) {
        switch type {
        case .text: self = .text(TextColumn())
        case .number: self = .number([])
        case .date: self = .date([])
        case .boolean: self = .boolean([])
        }
    }

    mutating func set(_ value: FieldValue?, at slot: Int) {
        switch (self, value) {
        case (.text(var c), _):
            if case .text(let s)? = value { c.set(s, at: slot) } else { c.set(nil, at: slot) }
            self = .text(c)
        case (.number(var c), _):
            Self.grow(&c, slot, Double.nan)
            if case .number(let d)? = value { c[slot] = d } else { c[slot] = .nan }
            self = .number(c)
        case (.date(var c), _):
            Self.grow(&c, slot, Double.nan)
            if case .date(let d)? = value { c[slot] = d } else { c[slot] = .nan }
            self = .date(c)
        case (.boolean(var c), _):
            Self.grow(&c, slot, 2)
            if case .boolean(let b)? = value { c[slot] = b ? 1 : 0 } else { c[slot] = 2 }
            self = .boolean(c)
        }
    }

    func value(at slot: Int) -> FieldValue? {
        switch self {
        case .text(let c): return c.value(at: slot).map(FieldValue.text)
        case .number(let c): return slot < c.count && !c[slot].isNaN ? .number(c[slot]) : nil
        case .date(let c): return slot < c.count && !c[slot].isNaN ? .date(c[slot]) : nil
        case .boolean(let c): return slot < c.count && c[slot] != 2 ? .boolean(c[slot] == 1) : nil
        }
    }

    private static func grow<T>(_ array: inout [T], _ slot: Int, _ fill: T) {
        if slot >= array.count { array.append(contentsOf: repeatElement(fill, count: slot + 1 - array.count)) }
    }
}

/// A typed field value.
enum FieldValue: Sendable, Equatable {
    case text(String)
    case number(Double)
    case date(Double)
    case boolean(Bool)
}

/// A declared field.
public struct FieldDefinition: Sendable, Equatable {
    public var name: String
    public var type: FieldType
    public var system: Bool
}
