import SegmentCore
import WireJSON

/// `fields.rename` and `fields.delete`: undoing a mistaken `fields.define` or import.
extension FieldDimension {
    var correctionMethods: [DimensionMethod] {
        let segmentList = Segment.referenceListSchema
        return [
            DimensionMethod(
                name: "fields.rename",
                summary: "Renames a custom field; its values stay, and segments naming it are rewritten to the new name (and listed).",
                paramsSchema: [
                    "type": "object", "required": ["name", "to"],
                    "properties": ["name": ["type": "string"], "to": ["type": "string"]], "additionalProperties": false,
                ],
                resultSchema: [
                    "type": "object",
                    "properties": [
                        "name": ["type": "string"], "type": ["enum": ["text", "number", "date", "boolean"]], "system": ["type": "boolean"],
                        "segments": segmentList,
                    ],
                ],
                body: .write { params, context in try rename(params, &context) }),
            DimensionMethod(
                name: "fields.delete",
                summary: "Deletes a custom field and every contact's value of it; refused while a segment names it, unless force.",
                paramsSchema: [
                    "type": "object", "required": ["name"],
                    "properties": ["name": ["type": "string"], "force": ["type": "boolean"]], "additionalProperties": false,
                ],
                resultSchema: [
                    "type": "object",
                    "properties": [
                        "deleted": ["type": "string"], "cleared": ["type": "integer", "description": "contacts that had a value"],
                        "segments": segmentList, "deleted_triggers": ["type": "array", "items": ["type": "integer"]],
                    ],
                ],
                body: .write { params, context in try delete(params, &context) }),
        ]
    }

    /// The custom field `field` as the params name it: a -32001 for an unknown one, a -32002
    /// for a system field (which cannot be renamed or deleted).
    private func custom(_ field: String, _ index: Index) throws(SegmentError) -> FieldDefinition {
        if let def = index.definitions[field] { return def }
        if Self.systemFields.contains(where: { $0.name == field }) { throw .conflict("\(field) is a system field") }
        throw .notFound("no field \(field)")
    }

    /// Stored segments with a filter on `field`, by id.
    static func segments(naming field: String, in book: Book, dimension: String) -> [Segment] {
        book.segments.values.filter { segment in
            Segment.filters(of: segment.filters, dimension: dimension).contains { $0["field"]?.stringValue == field }
        }.sorted { $0.id < $1.id }
    }

    private func rename(_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue {
        try params.rejectUnknownKeys(allowed: ["name", "to"])
        let field = try params.string("name")
        let to = try params.string("to")
        try Self.checkName(to, path: "to")
        var index = Self.index(context.book, name)
        let def = try custom(field, index)
        guard field != to else { return Self.json(def).merging(["segments": []]) }
        if let existing = index.definition(to) {
            throw SegmentError.conflict(existing.system ? "\(to) is a system field" : "a field named \(to) already exists; delete or rename it first")
        }
        // Values stay in their column; each stored document that holds one is rewritten
        // under the new key (in Swift, so numbers keep every digit).
        let holders = Self.holders(of: field, index: index, book: context.book)
        index.rename(field, to: to)
        Self.definitionsChanged(index, gone: [field], dimension: name, context: &context)
        context.restore(ContactSet(holders), in: name)
        context.book.setPart(index)
        // The rules now say `to` where they said `field`: the same contacts, so no trigger fires.
        var rewritten: [JSONValue] = []
        for var segment in Self.segments(naming: field, in: context.book, dimension: name) {
            guard let rule = Segment.rewriting(segment.filters, dimension: name, { filter in
                guard filter["field"]?.stringValue == field else { return nil }
                var copy = filter
                copy["field"] = .string(to)
                return copy
            }) else { continue }
            segment.filters = rule
            segment.updatedAt = context.now
            context.rewrite(segment: segment)
            rewritten.append(segment.reference)
        }
        return Self.json(index.definitions[to]!).merging(["segments": .array(rewritten)])
    }

    private func delete(_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue {
        try params.rejectUnknownKeys(allowed: ["name", "force"])
        let field = try params.string("name")
        let force = try params.optionalBool("force") ?? false
        var index = Self.index(context.book, name)
        _ = try custom(field, index)
        let using = Self.segments(naming: field, in: context.book, dimension: name)
        if !using.isEmpty && !force {
            throw SegmentError.conflict(
                "field \(field) is used by \(Segment.describe(using)); change the rules that name it first, or pass force: true")
        }
        let holders = Self.holders(of: field, index: index, book: context.book)
        index.undefine(field)
        Self.definitionsChanged(index, gone: [field], dimension: name, context: &context)
        context.restore(ContactSet(holders), in: name)
        context.book.setPart(index)
        for slot in holders { context.touched.insert(slot) }
        // Segments naming the field keep their rule as written, flagged for review: it no
        // longer compiles, so they count, resolve and export nothing but an error naming the
        // field (never a wider audience) until their rule is changed or the field defined
        // again. Their triggers cannot be evaluated any more and are deleted (by the engine,
        // which owns them); they are listed here.
        var deletedTriggers: [Int64] = []
        for var segment in using {
            deletedTriggers += context.book.triggers.values.filter { $0.segmentID == segment.id }.map(\.id)
            segment.reviewNeeded = true
            segment.updatedAt = context.now
            context.rewrite(segment: segment)
        }
        return [
            "deleted": .string(field), "cleared": .int(Int64(holders.count)), "segments": .array(using.map(\.reference)),
            "deleted_triggers": .array(deletedTriggers.sorted().map { .int($0) }),
        ]
    }

    /// Live contacts with a value of `field`.
    static func holders(of field: String, index: Index, book: Book) -> [Int] {
        guard let column = index.column(field) else { return [] }
        var slots: [Int] = []
        book.alive.forEach { slot in if column.value(at: slot) != nil { slots.append(slot) } }
        return slots
    }
}

extension JSONValue {
    /// An object with `extra`'s keys added (self unchanged when it is not an object).
    func merging(_ extra: [String: JSONValue]) -> JSONValue {
        guard case .object(var o) = self else { return self }
        o.merge(extra) { _, new in new }
        return .object(o)
    }
}
