import SegmentCore
import WireJSON

/// What an edit of a segment would change, computed without saving it (`segments.update`
/// with `dry_run: true`).
public struct UpdatePreview: Sendable {
    /// The segment as the update would save it (`updated_at` is still the stored one).
    public var segment: Segment
    /// Members under the new rule only, under the old rule only, and under both; each the
    /// audience asked for (the send audience by default), on one snapshot.
    public var added: ContactSet
    public var removed: ContactSet
    public var kept: ContactSet
    /// The first `sampleSize` emails of each group, in the book's contact order (the order
    /// `segments.resolve` streams them in).
    public var samples: (added: [String], removed: [String], kept: [String])
    public var audience: Audience
    public var asOf: Double
    public var version: Int64

    /// How many sample emails each group shows.
    public static let sampleSize = 10

    public var json: JSONValue {
        func group(_ set: ContactSet, _ emails: [String]) -> JSONValue {
            ["count": .int(Int64(set.count)), "sample": .array(emails.map { .string($0) })]
        }
        return [
            "dry_run": true, "segment": segment.json,
            "added": group(added, samples.added), "removed": group(removed, samples.removed), "kept": group(kept, samples.kept),
            "audience": .string(audience.rawValue), "as_of": .string(ISOTime.format(asOf)), "version": .int(version),
        ]
    }
}

extension Engine {
    /// The effect of `updateSegment` with these arguments, on the current snapshot, saving
    /// nothing: the same validation and errors as the update itself, then who would join and
    /// leave the segment's `audience`. Without `filters`, the rule is unchanged: every member
    /// is kept.
    public func previewSegmentUpdate(
        id: Int64, name: String? = nil, description: String? = nil, filters: JSONValue? = nil, reviewNeeded: Bool? = nil,
        audience: Audience = .send
    ) async throws -> UpdatePreview {
        let name = try name.map(Self.checkSegmentName)
        try await catchUpBeforeValidating()
        let book = snapshot
        var segment = try self.segment(id: id, in: book)
        if let name {
            if book.segments.values.contains(where: { $0.id != id && $0.name.lowercased() == name.lowercased() }) {
                throw SegmentError.conflict("a segment named \"\(name)\" already exists")
            }
            segment.name = name
        }
        let old = try compile(filters: segment.filters, book: book)
        let new = try filters.map { f throws(SegmentError) in try compile(filters: f, book: book, segment: id) } ?? old
        if let filters { segment.filters = filters; segment.reviewNeeded = new.reviewNeeded }
        if let description { segment.description = description }
        if let reviewNeeded { segment.reviewNeeded = reviewNeeded }

        let before = members(rule: old, audience: audience, book: book)
        let after = filters == nil ? before : members(rule: new, audience: audience, book: book)
        let added = after.subtracting(before), removed = before.subtracting(after), kept = after.intersection(before)
        struct Enough: Error {}
        func sample(_ set: ContactSet) -> [String] {
            var emails: [String] = []
            try? set.forEach { slot in
                guard emails.count < UpdatePreview.sampleSize else { throw Enough() }
                emails.append(book.emails[slot])
            }
            return emails
        }
        return UpdatePreview(
            segment: segment, added: added, removed: removed, kept: kept, samples: (sample(added), sample(removed), sample(kept)),
            audience: audience, asOf: now, version: book.version)
    }
}
