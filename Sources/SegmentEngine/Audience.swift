import SegmentCore
import WireJSON

/// Which contacts of a rule's matches an answer keeps.
public enum Audience: String, Sendable {
    /// What may be mailed: status `active` and not on the suppression list.
    case send
    /// Every match.
    case all
}

/// The answer of `segments.count`.
public struct CountResult: Sendable, Equatable {
    public var matched: Int
    public var sendable: Int
    /// Matches left out of the send audience, by reason. Status reasons come first; a
    /// contact counts under `suppressed` only if its status would have let it through.
    public var excluded: [String: Int]
    public var audience: Audience
    public var asOf: Double
    public var version: Int64

    public var json: JSONValue {
        [
            "matched": .int(Int64(matched)), "sendable": .int(Int64(sendable)),
            "excluded": .object(excluded.mapValues { .int(Int64($0)) }),
            "audience": .string(audience.rawValue),
            "size": .int(Int64(audience == .send ? sendable : matched)),
            "as_of": .string(ISOTime.format(asOf)), "version": .int(version),
        ]
    }
}

extension Engine {
    /// Statuses that keep a contact out of the send audience, reported in `excluded`.
    static let excludedStatuses = ["unsubscribed", "hard_bounce", "pending"]

    /// The send audience of `book`: active (per the registered status dimension) and not suppressed.
    func sendMask(_ book: Book, now: Double) -> ContactSet {
        var mask = statusSet("active", book: book, now: now) ?? book.alive
        mask.subtract(book.suppressed)
        return mask
    }

    /// Contacts with `status`, through the status dimension's own filter, if it is registered.
    func statusSet(_ status: String, book: Book, now: Double) -> ContactSet? {
        guard registry.provider(named: "status") != nil,
            let rule = try? registry.compile(filters: [["dimension": "status", "op": "equals", "value": .string(status)]], book: book, time: time)
        else { return nil }
        return rule.resolve(in: book, at: now)
    }

    /// Counts a rule's matches on one snapshot, with the send audience and its exclusions.
    public func count(rule: CompiledRule, audience: Audience = .send, book: Book? = nil) -> CountResult {
        let book = book ?? snapshot
        let now = self.now
        let matched = rule.resolve(in: book, at: now)
        let sendable = matched.intersection(sendMask(book, now: now))
        var excluded: [String: Int] = [:]
        var rest = matched.subtracting(sendable)
        for status in Self.excludedStatuses {
            let set = statusSet(status, book: book, now: now) ?? ContactSet()
            excluded[status] = rest.intersectionCount(set)
            rest.subtract(set)
        }
        excluded["suppressed"] = rest.intersectionCount(book.suppressed)
        return CountResult(
            matched: matched.count, sendable: sendable.count, excluded: excluded, audience: audience, asOf: now, version: book.version)
    }

    /// The members of a rule in the chosen audience, on one snapshot.
    public func members(rule: CompiledRule, audience: Audience = .send, book: Book) -> ContactSet {
        let now = self.now
        let matched = rule.resolve(in: book, at: now)
        return audience == .send ? matched.intersection(sendMask(book, now: now)) : matched
    }
}
