import Foundation
import SegmentCore
import WireJSON

extension EngagementDimension {
    /// The most events one `engagement.record` call takes.
    public static let maxEvents = 10_000

    public var methods: [DimensionMethod] {
        [
            DimensionMethod(
                name: "engagement.record",
                summary: "Records open/click/send events; a time older than the stored one does not move it back.",
                paramsSchema: [
                    "type": "object", "required": ["events"],
                    "properties": [
                        "events": [
                            "type": "array", "maxItems": .int(Int64(Self.maxEvents)),
                            "items": [
                                "type": "object", "required": ["email", "type", "at"],
                                "properties": ["email": ["type": "string"], "type": ["enum": ["open", "click", "send"]], "at": ["type": "string", "format": "date-time"]],
                            ],
                        ]
                    ],
                ],
                resultSchema: [
                    "type": "object",
                    "properties": ["recorded": ["type": "integer"], "unchanged": ["type": "integer"], "failed": ["type": "array"]],
                ],
                body: .write { params, context in try record(params, &context) })
        ]
    }

    private func record(_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue {
        try params.rejectUnknownKeys(allowed: ["events"])
        let events = try params.array("events")
        guard events.count <= Self.maxEvents else {
            throw SegmentError(.tooLarge, "at most \(Self.maxEvents) events per call, got \(events.count)", path: "events")
        }
        var recorded = 0, unchanged = 0
        var failed: [JSONValue] = []
        for (i, raw) in events.enumerated() {
            do {
                let item = try ParamReader(raw, path: "events".index(i))
                try item.rejectUnknownKeys(allowed: ["email", "type", "at"])
                let email = try item.string("email").trimmingCharacters(in: .whitespaces)
                let type = try item.string("type")
                guard let event = Self.events.firstIndex(of: type) else {
                    throw SegmentError.invalidParams(path: item.path.member("type"), "unknown event type \"\(type)\"; expected open, click or send")
                }
                let atText = try item.string("at")
                guard let at = context.time.parseStart(atText) else {
                    throw SegmentError.invalidParams(path: item.path.member("at"), "expected an ISO 8601 time, got \"\(atText)\"")
                }
                guard let slot = context.book.slot(of: email) else {
                    throw SegmentError(.notFound, "no contact \(email)", path: item.path.member("email"))
                }
                if try record(event: event, slot: slot, at: at, context: &context) { recorded += 1 } else { unchanged += 1 }
            } catch let error as SegmentError {
                failed.append(["index": .int(Int64(i)), "error": .string(error.description)])
            }
        }
        return ["recorded": .int(Int64(recorded)), "unchanged": .int(Int64(unchanged)), "failed": .array(failed)]
    }
}
