import SegmentCore
import WireJSON

/// `labels.rename` and `labels.delete`: undoing a mistaken label across the whole book.
extension LabelDimension {
    var correctionMethods: [DimensionMethod] {
        let segmentList = Segment.referenceListSchema
        return [
            DimensionMethod(
                name: "labels.rename",
                summary: "Renames a label on every contact, merging into `to` when that label exists; segments naming it are rewritten (and listed).",
                paramsSchema: [
                    "type": "object", "required": ["name", "to"],
                    "properties": ["name": ["type": "string"], "to": ["type": "string"]], "additionalProperties": false,
                ],
                resultSchema: [
                    "type": "object",
                    "properties": [
                        "name": ["type": "string"], "contacts": ["type": "integer"], "merged": ["type": "boolean"], "segments": segmentList,
                    ],
                ],
                body: .write { params, context in try rename(params, &context) }),
            DimensionMethod(
                name: "labels.delete",
                summary: "Removes a label from every contact; refused while a segment names it, unless force.",
                paramsSchema: [
                    "type": "object", "required": ["name"],
                    "properties": ["name": ["type": "string"], "force": ["type": "boolean"]], "additionalProperties": false,
                ],
                resultSchema: [
                    "type": "object",
                    "properties": ["deleted": ["type": "string"], "contacts": ["type": "integer"], "segments": segmentList],
                ],
                body: .write { params, context in try delete(params, &context) }),
        ]
    }

    /// A label filter's labels as written: one string or a list.
    private static func labels(in filter: [String: JSONValue]) -> [String] {
        switch filter["value"] {
        case .string(let s)?: return [s]
        case .array(let items)?: return items.compactMap(\.stringValue)
        default: return []
        }
    }

    /// Stored segments with a label filter naming `key` (any spelling), by id.
    static func segments(naming key: String, in book: Book, dimension: String) -> [Segment] {
        book.segments.values.filter { segment in
            Segment.filters(of: segment.filters, dimension: dimension).contains { filter in
                labels(in: filter).contains { $0.trimmingWhitespace.lowercased() == key }
            }
        }.sorted { $0.id < $1.id }
    }

    private func checkedName(_ params: ParamReader, _ key: String) throws(SegmentError) -> String {
        let label = try params.string(key).trimmingWhitespace
        guard !label.isEmpty else { throw .invalidParams(path: key, "a label cannot be empty") }
        guard label.utf8.count <= Self.maxLabelLength || label.count <= Self.maxLabelLength else {
            throw .invalidParams(path: key, "a label is at most \(Self.maxLabelLength) characters")
        }
        return label
    }

    private func rename(_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue {
        try params.rejectUnknownKeys(allowed: ["name", "to"])
        let from = try checkedName(params, "name").lowercased()
        let to = try checkedName(params, "to")
        let toKey = to.lowercased()
        var index = context.book.part(Index.self) ?? Index()
        guard let entry = index.labels[from] else { throw SegmentError.notFound("no label \(try params.string("name"))") }
        let members = entry.members.intersection(context.book.alive)
        let merged = toKey != from && index.labels[toKey] != nil
        if toKey == from {
            // Only the spelling changes: same key, same members, nothing for triggers to see.
            index.labels[from]!.name = to
            context.changedDefinition(from, in: name)
        } else {
            // Every carrier now carries `to` instead; a merge keeps the target's spelling and
            // its latest `last_added_at`.
            var target = index.labels[toKey] ?? Entry(name: to)
            target.members.formUnion(members)
            target.lastAddedAt = [target.lastAddedAt, entry.lastAddedAt].compactMap { $0 }.max()
            index.labels[toKey] = target
            index.labels.removeValue(forKey: from)
            context.changedDefinition(from, in: name)
            context.changedDefinition(toKey, in: name)
            // Each carrier's stored keys: `from` becomes `toKey` (once, if it had both).
            context.restore(members, in: name)
            context.touched.formUnion(members)
        }
        let display = index.labels[toKey]!.name
        context.book.setPart(index)
        // Rules now name `to` where they named the old label. Renaming keeps each rule's
        // answer; a merge widens it to the target's carriers (who are re-checked, and fire,
        // like contacts the write touched).
        var rewritten: [JSONValue] = []
        for var segment in Self.segments(naming: from, in: context.book, dimension: name) {
            guard let rule = Segment.rewriting(segment.filters, dimension: name, { filter in
                Self.renaming(filter, from: from, to: display)
            }) else { continue }
            segment.filters = rule
            segment.updatedAt = context.now
            context.rewrite(segment: segment)
            rewritten.append(segment.reference)
        }
        return [
            "name": .string(display), "contacts": .int(Int64(index.labels[toKey]!.members.intersectionCount(context.book.alive))),
            "merged": .bool(merged), "segments": .array(rewritten),
        ]
    }

    /// A label filter with `from` (any spelling) written `to`; a list keeps one of each label.
    static func renaming(_ filter: [String: JSONValue], from: String, to: String) -> [String: JSONValue]? {
        var copy = filter
        switch filter["value"] {
        case .string(let s)? where s.trimmingWhitespace.lowercased() == from:
            copy["value"] = .string(to)
        case .array(let items)?:
            guard items.contains(where: { $0.stringValue?.trimmingWhitespace.lowercased() == from }) else { return nil }
            var seen: Set<String> = []
            var out: [JSONValue] = []
            for item in items {
                let renamed: JSONValue = item.stringValue?.trimmingWhitespace.lowercased() == from ? .string(to) : item
                if let s = renamed.stringValue, !seen.insert(s.trimmingWhitespace.lowercased()).inserted { continue }
                out.append(renamed)
            }
            copy["value"] = .array(out)
        default:
            return nil
        }
        return copy
    }

    private func delete(_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue {
        try params.rejectUnknownKeys(allowed: ["name", "force"])
        let key = try checkedName(params, "name").lowercased()
        let force = try params.optionalBool("force") ?? false
        var index = context.book.part(Index.self) ?? Index()
        guard let entry = index.labels[key] else { throw SegmentError.notFound("no label \(try params.string("name"))") }
        let using = Self.segments(naming: key, in: context.book, dimension: name)
        if !using.isEmpty && !force {
            let list = Segment.describe(using)
            throw SegmentError.conflict("label \(entry.name) is used by \(list); change the rules that name it first, or pass force: true")
        }
        let members = entry.members.intersection(context.book.alive)
        index.labels.removeValue(forKey: key)
        context.book.setPart(index)
        context.changedDefinition(key, in: name)
        context.restore(members, in: name)
        context.touched.formUnion(members)
        // Segments naming it keep their rule as written, flagged for review: a label nobody
        // carries is a valid filter (`contains` matches nobody, `not_contains` everybody),
        // exactly as before the label existed; their triggers see the carriers leave it.
        for var segment in using {
            segment.reviewNeeded = true
            segment.updatedAt = context.now
            context.rewrite(segment: segment)
        }
        return ["deleted": .string(entry.name), "contacts": .int(Int64(members.count)), "segments": .array(using.map(\.reference))]
    }
}
