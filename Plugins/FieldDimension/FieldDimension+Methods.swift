import SegmentCore
import WireJSON

extension FieldDimension {
    public var methods: [DimensionMethod] {
        let dimension = name
        let fieldSchema: JSONValue = [
            "type": "object",
            "properties": ["name": ["type": "string"], "type": ["enum": ["text", "number", "date", "boolean"]], "system": ["type": "boolean"]],
        ]
        return [
            DimensionMethod(
                name: "fields.define",
                summary: "Declares a custom field with a type; redefining with the same type is a no-op, with another type a conflict.",
                paramsSchema: [
                    "type": "object", "required": ["name", "type"],
                    "properties": ["name": ["type": "string"], "type": ["enum": ["text", "number", "date", "boolean"]]],
                ],
                resultSchema: fieldSchema,
                body: .write { params, context in
                    try params.rejectUnknownKeys(allowed: ["name", "type"])
                    let field = try params.string("name")
                    let typeName = try params.string("type")
                    guard let type = FieldType(rawValue: typeName) else {
                        throw SegmentError.invalidParams(path: "type", "unknown type \"\(typeName)\"; expected text, number, date or boolean")
                    }
                    try Self.checkName(field)
                    var index = Self.index(context.book, dimension)
                    if let existing = index.definition(field) {
                        if existing.system { throw SegmentError.conflict("\(field) is a system field") }
                        guard existing.type == type else {
                            throw SegmentError.conflict("field \(field) is already defined as \(existing.type.rawValue)")
                        }
                        return Self.json(existing)
                    }
                    index.define(field, type: type)
                    context.changedDefinition(field, in: dimension)
                    context.book.setPart(index)
                    return Self.json(index.definitions[field]!)
                }),
            DimensionMethod(
                name: "fields.list",
                summary: "Every field, system and custom, with its type.",
                paramsSchema: ["type": "object", "properties": [:]],
                resultSchema: ["type": "array", "items": fieldSchema],
                body: .read { params, book in
                    try params.rejectUnknownKeys(allowed: [])
                    let index = Self.index(book, dimension)
                    return .array((Self.systemFields + index.order.compactMap { index.definitions[$0] }).map(Self.json))
                }),
        ] + correctionMethods
    }

    static func json(_ def: FieldDefinition) -> JSONValue {
        ["name": .string(def.name), "type": .string(def.type.rawValue), "system": .bool(def.system)]
    }

    /// Field names: 1 to 64 characters, no control characters, no leading or trailing space.
    /// Any script is fine; names are bound as SQL parameters, never spliced into SQL.
    static func checkName(_ field: String, path: String = "name") throws(SegmentError) {
        guard !field.isEmpty, field.count <= 64 else {
            throw .invalidParams(path: path, "a field name has 1 to 64 characters")
        }
        guard !field.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }),
            field.first?.isWhitespace == false, field.last?.isWhitespace == false
        else {
            throw .invalidParams(path: path, "a field name has no control characters and no leading or trailing space")
        }
    }
}
