import SegmentCore
import WireJSON

extension LabelDimension {
    public var methods: [DimensionMethod] {
        return [
            DimensionMethod(
                name: "labels.list",
                summary: "Every label with its contact count and when a contact last gained it.",
                paramsSchema: ["type": "object", "properties": [:]],
                resultSchema: [
                    "type": "array",
                    "items": [
                        "type": "object",
                        "properties": ["name": ["type": "string"], "contacts": ["type": "integer"], "last_added_at": ["type": ["string", "null"]]],
                    ],
                ],
                body: .read { params, book in
                    try params.rejectUnknownKeys(allowed: [])
                    let index = book.part(Index.self) ?? Index()
                    let rows = index.labels.values.sorted { $0.name.lowercased() < $1.name.lowercased() }.map { entry -> JSONValue in
                        .object([
                            "name": .string(entry.name),
                            "contacts": .int(Int64(entry.members.intersectionCount(book.alive))),
                            "last_added_at": entry.lastAddedAt.map { .string(ISOTime.format($0)) } ?? .null,
                        ])
                    }
                    return .array(rows)
                })
        ] + correctionMethods
    }
}
