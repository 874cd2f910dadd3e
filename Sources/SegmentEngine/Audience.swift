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
    /// Matches left out of the send audience, by reason. The audience provider's reasons
    /// come first; a contact counts under `suppressed` only if it would have been let through.
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
    /// The send audience of `book`: what the audience provider lets in (every contact when
    /// none is registered), less the suppression list.
    func sendMask(_ book: Book, now: Double) -> ContactSet {
        var mask = registry.audience?.sendable(in: book).intersection(book.alive) ?? book.alive
        mask.subtract(book.suppressed)
        return mask
    }

    /// Counts a rule's matches on one snapshot, with the send audience and its exclusions.
    public func count(rule: CompiledRule, audience: Audience = .send, book: Book? = nil) -> CountResult {
        let book = book ?? snapshot
        let now = self.now
        let matched = rule.resolve(in: book, at: now)
        let sendable = matched.intersection(sendMask(book, now: now))
        var excluded: [String: Int] = [:]
        var rest = matched.subtracting(sendable)
        for (reason, set) in registry.audience?.exclusions(in: book) ?? [] {
            excluded[reason] = rest.intersectionCount(set)
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
