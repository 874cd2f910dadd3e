import SegmentCore
import WireJSON

extension Engine {
    /// Why one contact is in or out of a rule: every filter and group with whether it matched
    /// and the value it looked at, and whether the contact is sendable and if not why.
    public func explain(rule: CompiledRule, email: String, book: Book? = nil) throws(SegmentError) -> JSONValue {
        let book = book ?? snapshot
        guard let slot = book.slot(of: email) else { throw .notFound("no contact \(email)") }
        let now = self.now
        let matches = rule.matches(slot: slot, in: book, at: now)
        var reasons: [JSONValue] = []
        if let why = registry.audience?.whyNotSendable(slot: slot, in: book) { reasons.append(.string(why)) }
        if book.suppressed.contains(slot) { reasons.append("the address is on the suppression list") }
        let filters = explainFilters(of: rule, slot: slot, book: book, now: now)
        return [
            "email": .string(book.emails[slot]), "matches": .bool(matches), "sendable": .bool(reasons.isEmpty),
            "in_send_audience": .bool(matches && reasons.isEmpty),
            "not_sendable_because": .array(reasons), "filters": .array(filters),
            "summary": .string(Self.summary(matches: matches, failed: Self.failedPaths(filters), reasons: reasons)),
            "as_of": .string(ISOTime.format(now)), "version": .int(book.version),
        ]
    }

    /// One sentence for people: `sendable` alone is about the contact (status `active`, not
    /// suppressed) whatever the rule, so a contact outside the segment can be "sendable"; the
    /// summary says what that means for this segment.
    static func summary(matches: Bool, failed: [String], reasons: [JSONValue]) -> String {
        let why = reasons.compactMap(\.stringValue).joined(separator: "; ")
        guard matches else {
            let rule = failed.isEmpty ? "the rule does not match" : "\(failed.joined(separator: ", ")) did not match"
            return "not in the send audience: \(rule)"
                + (reasons.isEmpty
                    ? " (the contact itself is sendable: status active, not suppressed)"
                    : ", and the contact is not sendable: \(why)")
        }
        return reasons.isEmpty
            ? "in the send audience: matches the rule and the contact is sendable"
            : "not in the send audience: matches the rule, but the contact is not sendable: \(why)"
    }

    /// The paths of the top-level filters and groups that did not match.
    static func failedPaths(_ filters: [JSONValue]) -> [String] {
        filters.compactMap { $0["matches"] == false ? ($0["path"]?.stringValue ?? "a group") : nil }
    }

    /// A rule's top-level filters and groups, each explained.
    private func explainFilters(of rule: CompiledRule, slot: Int, book: Book, now: Double) -> [JSONValue] {
        guard case .all(let children) = rule.root else { return [explain(rule.root, index: 0, slot: slot, book: book, now: now)] }
        return children.enumerated().map { explain($0.element, index: $0.offset, slot: slot, book: book, now: now) }
    }

    private func explain(_ node: CompiledRule.Node, index: Int, slot: Int, book: Book, now: Double) -> JSONValue {
        switch node {
        case .leaf(let predicate, let dimension, let path):
            var out: [String: JSONValue] = [
                "index": .int(Int64(index)), "path": .string(path), "dimension": .string(dimension),
                "matches": .bool(predicate.matches(slot: slot, in: book, at: now)),
                "detail": .string(predicate.explain(slot: slot, in: book, at: now)),
            ]
            // A segment filter: the referenced segment's own filters, explained the same way.
            if let reference = predicate as? any SegmentReferencePredicate {
                out["segment"] = [
                    "id": .int(reference.segmentID), "name": .string(reference.segmentName),
                    "matches": .bool(reference.rule.matches(slot: slot, in: book, at: now)),
                    "filters": .array(explainFilters(of: reference.rule, slot: slot, book: book, now: now)),
                ]
            }
            return .object(out)
        case .any(let children, let path):
            let parts = children.enumerated().map { explain($0.element, index: $0.offset, slot: slot, book: book, now: now) }
            return [
                "index": .int(Int64(index)), "path": .string(path), "any": .array(parts),
                "matches": .bool(parts.contains { $0["matches"] == true }),
                "detail": .string("at least one of \(children.count) must match"),
            ]
        case .all(let children):
            let parts = children.enumerated().map { explain($0.element, index: $0.offset, slot: slot, book: book, now: now) }
            return ["index": .int(Int64(index)), "all": .array(parts), "matches": .bool(parts.allSatisfy { $0["matches"] == true })]
        }
    }
}
