import WireJSON

extension Segment {
    /// Every filter object of a rule whose `dimension` is `dimension`, `any` groups included.
    public static func filters(of rule: JSONValue, dimension: String) -> [[String: JSONValue]] {
        var found: [[String: JSONValue]] = []
        _ = rewriting(rule, dimension: dimension) { filter in
            found.append(filter)
            return nil
        }
        return found
    }

    /// The rule with each filter of `dimension` (`any` groups included) replaced by what
    /// `transform` returns for it (`nil`: kept as it is); `nil` when nothing changed.
    public static func rewriting(
        _ rule: JSONValue, dimension: String, _ transform: ([String: JSONValue]) -> [String: JSONValue]?
    ) -> JSONValue? {
        guard case .array(let items) = rule else { return nil }
        var changed = false
        var out: [JSONValue] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .object(let filter) = item else {
                out.append(item)
                continue
            }
            if let group = filter["any"] {
                if let rewritten = rewriting(group, dimension: dimension, transform) {
                    var copy = filter
                    copy["any"] = rewritten
                    out.append(.object(copy))
                    changed = true
                } else {
                    out.append(item)
                }
            } else if filter["dimension"]?.stringValue == dimension, let replacement = transform(filter) {
                out.append(.object(replacement))
                changed = true
            } else {
                out.append(item)
            }
        }
        return changed ? .array(out) : nil
    }

    /// `{"id": …, "name": …}`, how replies list the segments a correction rewrote or would break.
    public var reference: JSONValue { ["id": .int(id), "name": .string(name)] }

    /// The JSON Schema of a list of ``reference``s, for `rpc.discover`.
    public static let referenceListSchema: JSONValue = [
        "type": "array", "items": ["type": "object", "properties": ["id": ["type": "integer"], "name": ["type": "string"]]],
    ]

    /// `segment 2 "VIP customers"`, `segments 2 "VIP customers", 4 "Jakarta"`: how refusals
    /// name the segments in the way.
    public static func describe(_ segments: [Segment]) -> String {
        (segments.count == 1 ? "segment " : "segments ") + segments.map { "\($0.id) \"\($0.name)\"" }.joined(separator: ", ")
    }
}

extension WriteContext {
    /// Stores a segment whose rule a correction rewrote (a renamed field or label) or flagged
    /// (`review_needed` after a forced delete). The engine persists it in the same
    /// transaction and gives its triggers the rule as it now compiles, keeping their
    /// baselines: contacts whose membership the new rule changes are re-checked like any
    /// touched contact, so they fire; the rest fire nothing. A trigger whose rule no longer
    /// compiles (its segment names a deleted field) is deleted.
    public mutating func rewrite(segment: Segment) {
        book.setSegment(segment)
        if !rewrittenSegments.contains(segment.id) { rewrittenSegments.append(segment.id) }
    }
}
