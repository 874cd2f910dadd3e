import WireJSON

/// Reads typed values out of a JSON object, naming the JSON path of anything wrong.
///
/// Used at every edge where JSON becomes typed values: RPC params, contact documents and
/// filters. Errors are `SegmentError.invalidParams` with the full path.
///
/// ```swift
/// let p = try ParamReader(params, path: "")
/// let email = try p.string("email")            // "email: required"
/// let atomic = try p.optionalBool("atomic") ?? false
/// ```
public struct ParamReader: Sendable {
    public let object: [String: JSONValue]
    public let path: String

    public init(_ value: JSONValue, path: String) throws(SegmentError) {
        guard case .object(let o) = value else {
            throw .invalidParams(path: path.isEmpty ? "params" : path, "expected an object, got \(value.typeName)")
        }
        self.object = o
        self.path = path
    }

    public func has(_ key: String) -> Bool { object[key].map { !$0.isNull } ?? false }

    public func value(_ key: String) throws(SegmentError) -> JSONValue {
        guard let v = object[key], !v.isNull else { throw .invalidParams(path: path.member(key), "required") }
        return v
    }

    public func string(_ key: String) throws(SegmentError) -> String {
        let v = try value(key)
        guard let s = v.stringValue else { throw typeError(key, "string", v) }
        return s
    }

    public func optionalString(_ key: String) throws(SegmentError) -> String? {
        guard has(key) else { return nil }
        return try string(key)
    }

    public func optionalBool(_ key: String) throws(SegmentError) -> Bool? {
        guard has(key) else { return nil }
        let v = try value(key)
        guard let b = v.boolValue else { throw typeError(key, "boolean", v) }
        return b
    }

    public func int(_ key: String) throws(SegmentError) -> Int64 {
        let v = try value(key)
        guard let i = v.intValue else { throw typeError(key, "integer", v) }
        return i
    }

    public func optionalInt(_ key: String, in range: ClosedRange<Int64>? = nil) throws(SegmentError) -> Int64? {
        guard has(key) else { return nil }
        let i = try int(key)
        if let range, !range.contains(i) {
            throw .invalidParams(path: path.member(key), "must be between \(range.lowerBound) and \(range.upperBound), got \(i)")
        }
        return i
    }

    public func array(_ key: String) throws(SegmentError) -> [JSONValue] {
        let v = try value(key)
        guard let a = v.arrayValue else { throw typeError(key, "array", v) }
        return a
    }

    public func optionalArray(_ key: String) throws(SegmentError) -> [JSONValue]? {
        guard has(key) else { return nil }
        return try array(key)
    }

    /// A list of strings (`["a", "b"]`), each element checked.
    public func strings(_ key: String) throws(SegmentError) -> [String] {
        let items = try array(key)
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue else {
                throw .invalidParams(path: path.member(key).index(i), "expected string, got \(item.typeName)")
            }
            out.append(s)
        }
        return out
    }

    public func optionalStrings(_ key: String) throws(SegmentError) -> [String]? {
        guard has(key) else { return nil }
        return try strings(key)
    }

    public func object(_ key: String) throws(SegmentError) -> ParamReader {
        try ParamReader(try value(key), path: path.member(key))
    }

    /// Refuses keys outside `allowed`, so a typo (`"lables"`) is an error, not a silent no-op.
    public func rejectUnknownKeys(allowed: Set<String>) throws(SegmentError) {
        // Sorted only to name the first unknown key when there is one (this runs per contact).
        guard object.keys.contains(where: { !allowed.contains($0) }) else { return }
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw .invalidParams(path: path.member(key), "unknown key; expected one of \(allowed.sorted().joined(separator: ", "))")
        }
    }

    func typeError(_ key: String, _ expected: String, _ got: JSONValue) -> SegmentError {
        .invalidParams(path: path.member(key), "expected \(expected), got \(got.typeName)")
    }
}
