import SegmentCore
import WireJSON

/// The answer of `segments.validate`.
public struct ValidationResult: Sendable {
    public var errors: [SegmentError]
    public var reviewNeeded: Bool
    public var valid: Bool { errors.isEmpty }
}

extension Engine {
    /// Compiles a rule against the current book, with errors naming the filter's path.
    /// `segment`: the stored segment the rule is (or is to become) the rule of, so that a
    /// reference back to it is refused as a cycle.
    public func compile(filters: JSONValue, path: String = "filters", book: Book? = nil, segment: Int64? = nil) throws(SegmentError) -> CompiledRule {
        try registry.compile(filters: filters, path: path, book: book ?? snapshot, time: time, chain: segment.map { [$0] } ?? [])
    }

    /// Checks every top-level filter and reports all errors, not only the first.
    /// `segment`: the stored segment the rule is meant for, so that a reference back to it is
    /// reported as the cycle it would close.
    public func validate(filters: JSONValue, segment: Int64? = nil) -> ValidationResult {
        let book = snapshot
        guard let items = filters.arrayValue else {
            return ValidationResult(errors: [.invalidParams(path: "filters", "expected an array of filters, got \(filters.typeName)")], reviewNeeded: false)
        }
        var errors: [SegmentError] = []
        var review = false
        for (i, item) in items.enumerated() {
            do {
                let rule = try registry.compile(filters: .array([item]), path: "filters", book: book, time: time, chain: segment.map { [$0] } ?? [])
                review = review || rule.reviewNeeded
            } catch {
                var e = error
                e.path = e.path.map { "filters".index(i) + $0.dropFirst("filters[0]".count) }
                errors.append(e)
            }
        }
        return ValidationResult(errors: errors, reviewNeeded: review)
    }

    /// The stored segment with `id`.
    public func segment(id: Int64, in book: Book? = nil) throws(SegmentError) -> Segment {
        guard let segment = (book ?? snapshot).segments[id] else { throw .notFound("no segment with id \(id)") }
        return segment
    }

    /// Every stored segment, by id.
    public func segments() -> [Segment] { snapshot.segments.values.sorted { $0.id < $1.id } }

    /// Stores a new segment; names are unique (case-insensitively).
    public func createSegment(name: String, description: String = "", filters: JSONValue) async throws -> Segment {
        let name = try Self.checkSegmentName(name)
        try await catchUpBeforeValidating()
        let rule = try compile(filters: filters)
        let text = filters.serialized()
        let registry = self.registry, time = self.time
        return try await write(cause: "segments.create") { context in
            if context.book.segments.values.contains(where: { $0.name.lowercased() == name.lowercased() }) {
                throw SegmentError.conflict("a segment named \"\(name)\" already exists")
            }
            // Again under the writer: a segment it refers to may have changed since.
            if !rule.referencedSegments.isEmpty { _ = try registry.compile(filters: filters, book: context.book, time: time) }
            try context.sql.execute(
                "INSERT INTO segment(name, name_key, description, filters, review_needed, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [.text(name), .text(name.lowercased()), .text(description), .text(text), .integer(rule.reviewNeeded ? 1 : 0),
                 .real(context.now), .real(context.now)])
            let id = context.sql.lastInsertRowID
            let segment = Segment(
                id: id, name: name, description: description, filters: filters, reviewNeeded: rule.reviewNeeded,
                createdAt: context.now, updatedAt: context.now)
            context.book.setSegment(segment)
            return segment
        }
    }

    /// Changes a segment's name, description or rule. A new rule recomputes `review_needed`;
    /// `reviewNeeded: false` clears it explicitly (a reviewer signed the rule off).
    public func updateSegment(
        id: Int64, name: String? = nil, description: String? = nil, filters: JSONValue? = nil, reviewNeeded: Bool? = nil
    ) async throws -> Segment {
        try await updateSegmentAndTriggers(id: id, name: name, description: description, filters: filters, reviewNeeded: reviewNeeded).segment
    }

    /// `updateSegment`, also saying which triggers took the new rule as their baseline: a
    /// rule change re-baselines the segment's triggers without firing (the old membership
    /// answered a different question).
    public func updateSegmentAndTriggers(
        id: Int64, name: String? = nil, description: String? = nil, filters: JSONValue? = nil, reviewNeeded: Bool? = nil
    ) async throws -> (segment: Segment, rebaselined: [Int64], rewritten: [Segment]) {
        let registry = self.registry, time = self.time
        let name = try name.map(Self.checkSegmentName)
        try await catchUpBeforeValidating()
        let rule = try filters.map { f throws(SegmentError) in try compile(filters: f, segment: id) }
        let text = filters?.serialized()
        return try await write(cause: "segments.update") { context in
            guard var segment = context.book.segments[id] else { throw SegmentError.notFound("no segment with id \(id)") }
            var rewritten: [Segment] = []
            if let name {
                if context.book.segments.values.contains(where: { $0.id != id && $0.name.lowercased() == name.lowercased() }) {
                    throw SegmentError.conflict("a segment named \"\(name)\" already exists")
                }
                if name != segment.name { rewritten = Self.renameReferences(to: segment, as: name, context: &context) }
                segment.name = name
            }
            if let description { segment.description = description }
            if let filters, let rule {
                // Again under the writer when it refers to others: they may have changed since
                // (a concurrent edit could otherwise close a cycle).
                if !rule.referencedSegments.isEmpty { _ = try registry.compile(filters: filters, book: context.book, time: time, chain: [id]) }
                segment.filters = filters
                segment.reviewNeeded = rule.reviewNeeded
            }
            if let reviewNeeded { segment.reviewNeeded = reviewNeeded }
            segment.updatedAt = context.now
            try context.sql.execute(
                "UPDATE segment SET name = ?, name_key = ?, description = ?, filters = COALESCE(?, filters), review_needed = ?, updated_at = ? WHERE id = ?",
                [.text(segment.name), .text(segment.name.lowercased()), .text(segment.description), text.map(SQLValue.text) ?? .null,
                 .integer(segment.reviewNeeded ? 1 : 0), .real(context.now), .integer(id)])
            context.book.setSegment(segment)
            var rebaselined: [Int64] = []
            if filters != nil {
                // The segments that contain this one must still compile with its new rule
                // (depth, size): refused here rather than saved broken.
                let referrers = Segment.referrers(of: id, in: context.book)
                for referrer in referrers {
                    do throws(SegmentError) {
                        _ = try registry.compile(filters: referrer.filters, book: context.book, time: time, chain: [referrer.id])
                    } catch {
                        throw SegmentError.invalidParams(
                            path: "filters", "segment \(referrer.id) \"\(referrer.name)\" contains this one and would no longer compile: \(error.message)")
                    }
                }
                // A new rule is a new question for this segment and for every segment that
                // contains it: their triggers take it as their baseline, silently.
                for changed in [segment] + referrers {
                    rebaselined += try Self.rebaseline(segment: changed, context: &context, registry: registry, time: time)
                }
            }
            return (segment, rebaselined.sorted(), rewritten)
        }
    }

    /// Rewrites the segments that refer to `segment` by its name to its new `name` (a
    /// reference by id needs nothing); returns them.
    static func renameReferences(to segment: Segment, as name: String, context: inout WriteContext) -> [Segment] {
        let old = segment.name.lowercased()
        var rewritten: [Segment] = []
        for var referrer in context.book.segments.values.sorted(by: { $0.id < $1.id }) where referrer.id != segment.id {
            let renamed = Segment.rewriting(referrer.filters, dimension: "segment") { filter in
                guard filter["value"]?.stringValue?.lowercased() == old else { return nil }
                var copy = filter
                copy["value"] = .string(name)
                return copy
            }
            guard let renamed else { continue }
            referrer.filters = renamed
            referrer.updatedAt = context.now
            context.rewrite(segment: referrer)
            rewritten.append(referrer)
        }
        return rewritten
    }

    /// Deletes a segment; returns it as it was. A segment with triggers is refused unless
    /// `force`, which deletes its triggers too.
    public func deleteSegment(id: Int64, force: Bool = false) async throws -> Segment {
        try await write(cause: "segments.delete") { context in
            guard let segment = context.book.segments[id] else { throw SegmentError.notFound("no segment with id \(id)") }
            let referrers = Segment.referrers(of: id, in: context.book, directly: true)
            if !referrers.isEmpty {
                throw SegmentError.conflict(
                    "segment \(id) \"\(segment.name)\" is used by \(Segment.describe(referrers)) (a segment filter); change their rules first")
            }
            let triggers = context.book.triggers.values.filter { $0.segmentID == id }.map(\.id).sorted()
            if !triggers.isEmpty {
                guard force else {
                    throw SegmentError.conflict(
                        "segment \(id) has triggers \(triggers.map(String.init).joined(separator: ", ")); delete them first or pass force: true")
                }
                for trigger in triggers { _ = try Self.dropTrigger(trigger, context: &context) }
            }
            try context.sql.execute("DELETE FROM segment WHERE id = ?", [.integer(id)])
            context.book.removeSegment(id: id)
            return segment
        }
    }

    /// Counts a stored segment.
    public func count(segment id: Int64, audience: Audience = .send) throws(SegmentError) -> CountResult {
        let book = snapshot
        let rule = try compile(filters: try segment(id: id, in: book).filters, book: book)
        return count(rule: rule, audience: audience, book: book)
    }

    /// Counts an ad-hoc rule.
    public func count(filters: JSONValue, audience: Audience = .send) throws(SegmentError) -> CountResult {
        let book = snapshot
        return count(rule: try compile(filters: filters, book: book), audience: audience, book: book)
    }

    static func checkSegmentName(_ raw: String) throws(SegmentError) -> String {
        let name = raw.trimmingSpaces
        guard !name.isEmpty, name.count <= 200 else { throw .invalidParams(path: "name", "a segment name has 1 to 200 characters") }
        return name
    }
}
