import WireJSON

extension ParamReader {
    /// The filter's `op`, checked against the dimension's operators.
    public func op(of dimension: String, allowed: [String]) throws(SegmentError) -> String {
        let op = try string("op")
        guard allowed.contains(op) else {
            throw .invalidParams(
                path: path.member("op"),
                "operator \"\(op)\" is not valid for \(dimension); expected one of \(allowed.joined(separator: ", "))")
        }
        return op
    }

    /// A filter's `value` as one string or a non-empty list of strings.
    public func stringOrList(_ key: String = "value") throws(SegmentError) -> [String] {
        let v = try value(key)
        if let s = v.stringValue { return [s] }
        guard v.arrayValue != nil else {
            throw .invalidParams(path: path.member(key), "expected a string or a list of strings, got \(v.typeName)")
        }
        let list = try strings(key)
        guard !list.isEmpty else { throw .invalidParams(path: path.member(key), "the list is empty") }
        return list
    }

    /// A filter's `value` as a non-empty list of strings.
    public func nonEmptyStrings(_ key: String = "value") throws(SegmentError) -> [String] {
        let list = try strings(key)
        guard !list.isEmpty else { throw .invalidParams(path: path.member(key), "the list is empty") }
        return list
    }

    /// Refuses a `value` on operators that take none (`is_empty`, `never`).
    public func rejectValue(for op: String) throws(SegmentError) {
        if has("value") { throw .invalidParams(path: path.member("value"), "operator \(op) takes no value") }
    }
}

/// A fixed set of named codes stored as one byte per contact (status, funnel stage).
public struct CodeColumn: Sendable {
    /// Slot → code; `none` for a slot without a value. Chunked: a write copies 4 KiB chunks.
    public var codes = ChunkedArray<UInt8>()
    /// One bitmap per code, for bulk answers.
    public var members: [ContactSet]
    public static let none: UInt8 = .max

    public init(codeCount: Int) {
        members = Array(repeating: ContactSet(), count: codeCount)
    }

    public func code(at slot: Int) -> UInt8 { slot < codes.count ? codes[slot] : Self.none }

    public mutating func set(_ code: UInt8, at slot: Int) {
        codes.grow(to: slot + 1, fill: Self.none)
        let old = codes[slot]
        if old == code { return }
        if old != Self.none { members[Int(old)].remove(slot) }
        if code != Self.none { members[Int(code)].insert(slot) }
        codes[slot] = code
    }

    /// The members of `candidates` that hold one of `wanted`: only the candidates' non-empty
    /// blocks are combined, so a trigger re-checking a few touched contacts pays for those.
    public func union(of wanted: [UInt8], within candidates: ContactSet) -> ContactSet {
        candidates.intersection(anyOf: wanted.map { members[Int($0)] })
    }
}

extension CodeColumn: ResidentSize {
    /// A byte per slot and a bitmap per code.
    public var residentBytes: Int { codes.residentBytes + ResidentBytes.array(members) }
}
