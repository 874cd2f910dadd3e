import SegmentCore

/// The type a custom field is declared with.
public enum FieldType: String, Sendable, CaseIterable {
    case text, number, date, boolean
}

/// A text column, dictionary-encoded: each distinct value is stored (and lower-cased) once,
/// so a `contains` filter tests each distinct value once rather than each contact.
struct TextColumn: Sendable {
    static let missing: Int32 = -1
    var ids = ChunkedArray<Int32>()
    var values = ChunkedArray<String>()
    var lower = ChunkedArray<String>()
    /// Text → id, holding only ids (the texts are in `values`). Names are often unique per
    /// contact: a plain dictionary would be copied whole by the first write of every batch.
    var idOf = HashIndex()

    func value(at slot: Int) -> String? {
        guard slot < ids.count, ids[slot] != Self.missing else { return nil }
        return values[Int(ids[slot])]
    }

    func lowerValue(at slot: Int) -> String? {
        guard slot < ids.count, ids[slot] != Self.missing else { return nil }
        return lower[Int(ids[slot])]
    }

    mutating func set(_ value: String?, at slot: Int) {
        ids.grow(to: slot + 1, fill: Self.missing)
        guard let value else {
            ids[slot] = Self.missing
            return
        }
        let hash = value.hashValue
        if let id = idOf.find(hash: hash, where: { values[$0] == value }) {
            ids[slot] = Int32(id)
        } else {
            let id = values.count
            values.append(value)
            lower.append(value.lowercased())
            idOf.insert(hash: hash, value: id)
            ids[slot] = Int32(id)
        }
    }
}

/// One field's values for every slot.
///
/// A struct with one storage per type rather than an enum with payloads: mutating an enum's
/// payload in place copies the whole column on every write, which made bulk upserts
/// quadratic.
struct FieldColumn: Sendable {
    let type: FieldType
    var text = TextColumn()
    /// Numbers and dates (seconds since 1970); NaN where the contact has no value.
    /// Chunked like every book column, so a write copies the chunks it touches, not the column.
    var numbers = ChunkedArray<Double>()
    /// 0 false, 1 true, 2 no value.
    var booleans = ChunkedArray<UInt8>()
    /// Number fields with few distinct values (counts, scores, tiers): each value's contacts,
    /// so a range filter ORs a few bitmaps instead of scanning a double per contact (a range
    /// count was ~4× the SQL baseline, which answers it from an index). `nil` once more than
    /// `maxDistinct` values have appeared; rebuilt from the column at the next start.
    var byValue: [Double: ContactSet]? = [:]
    static let maxDistinct = 64

    init(type: FieldType) {
        self.type = type
        if type != .number { byValue = nil }
    }

    mutating func set(_ value: FieldValue?, at slot: Int) {
        switch type {
        case .text:
            if case .text(let s)? = value { text.set(s, at: slot) } else { text.set(nil, at: slot) }
        case .number, .date:
            numbers.grow(to: slot + 1, fill: .nan)
            let old = numbers[slot]
            switch value {
            case .number(let d)?, .date(let d)?: numbers[slot] = d
            default: numbers[slot] = .nan
            }
            if byValue != nil { index(slot, from: old, to: numbers[slot]) }
        case .boolean:
            booleans.grow(to: slot + 1, fill: 2)
            if case .boolean(let b)? = value { booleans[slot] = b ? 1 : 0 } else { booleans[slot] = 2 }
        }
    }

    /// Sets the value if it differs; whether it did.
    mutating func update(_ value: FieldValue?, at slot: Int) -> Bool {
        guard self.value(at: slot) != value else { return false }
        set(value, at: slot)
        return true
    }

    /// Moves `slot` between the value bitmaps (NaN: no value).
    private mutating func index(_ slot: Int, from old: Double, to new: Double) {
        guard old != new || old.isNaN != new.isNaN else { return }
        if !old.isNaN { byValue![old]?.remove(slot) }
        guard !new.isNaN else { return }
        if byValue![new] == nil && byValue!.count >= Self.maxDistinct {
            byValue = nil
            return
        }
        byValue![new, default: ContactSet()].insert(slot)
    }

    /// The slots `range` accepts, from the value bitmaps; `nil` without them.
    func fromValueBitmaps(_ range: DoubleRange, capacity: Int) -> ContactSet? {
        guard let byValue else { return nil }
        var set = ContactSet(capacity: capacity)
        var valued = ContactSet(capacity: capacity)
        for (value, members) in byValue {
            if range.contains(value) { set.formUnion(members) }
            if range.missing { valued.formUnion(members) }
        }
        if range.missing { set.formUnion(ContactSet.full(capacity: capacity).subtracting(valued)) }
        return set
    }

    func value(at slot: Int) -> FieldValue? {
        switch type {
        case .text: return text.value(at: slot).map(FieldValue.text)
        case .number: return slot < numbers.count && !numbers[slot].isNaN ? .number(numbers[slot]) : nil
        case .date: return slot < numbers.count && !numbers[slot].isNaN ? .date(numbers[slot]) : nil
        case .boolean: return slot < booleans.count && booleans[slot] != 2 ? .boolean(booleans[slot] == 1) : nil
        }
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

extension TextColumn: ResidentSize {
    /// Ids per slot, each distinct text twice (as given and lower-cased), the text → id table.
    var residentBytes: Int { ids.residentBytes + values.residentBytes + lower.residentBytes + idOf.residentBytes }
}

extension FieldColumn: ResidentSize {
    /// Only the storage of the field's type is ever filled; the others stay empty (0).
    var residentBytes: Int {
        text.residentBytes + numbers.residentBytes + booleans.residentBytes + (byValue.map(ResidentBytes.dictionary) ?? 0)
    }
}

extension FieldDefinition: ResidentSize {
    public var residentBytes: Int { ResidentBytes.string(name) }
}
