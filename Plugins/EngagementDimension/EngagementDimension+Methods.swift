import Foundation
import SegmentCore
import WireJSON

extension EngagementDimension {
    /// The most events one `engagement.record` call takes.
    public static let maxEvents = 10_000
    /// How far past the server's clock an event may be: a little clock skew between the
    /// sender and the server, not a typo (an open in 2030 would hold the contact "engaged"
    /// for years, since a time never moves back).
    public static let maxFuture: Double = 300

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
                body: .write { params, context in try record(params, &context) }),
            DimensionMethod(
                name: "engagement.reset",
                summary: "Clears a contact's last time for one event type (to undo a mistaken record).",
                paramsSchema: [
                    "type": "object", "required": ["email", "type"],
                    "properties": ["email": ["type": "string"], "type": ["enum": ["open", "click", "send"]]],
                    "additionalProperties": false,
                ],
                resultSchema: [
                    "type": "object",
                    "properties": [
                        "email": ["type": "string"], "type": ["type": "string"],
                        "cleared": ["type": ["string", "null"], "description": "the time that was cleared, null when there was none"],
                    ],
                ],
                body: .write { params, context in try reset(params, &context) }),
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
                guard at <= context.now + Self.maxFuture else {
                    throw SegmentError.invalidParams(
                        path: item.path.member("at"),
                        "\(atText) is more than \(Int(Self.maxFuture / 60)) minutes in the future (server time \(ISOTime.format(context.now)))")
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

    private func reset(_ params: ParamReader, _ context: inout WriteContext) throws -> JSONValue {
        try params.rejectUnknownKeys(allowed: ["email", "type"])
        let email = try params.string("email").trimmingCharacters(in: .whitespaces)
        let type = try params.string("type")
        guard let event = Self.events.firstIndex(of: type) else {
            throw SegmentError.invalidParams(path: "type", "unknown event type \"\(type)\"; expected open, click or send")
        }
        guard let slot = context.book.slot(of: email) else { throw SegmentError.notFound("no contact \(email)") }
        let cleared = try clear(event: event, slot: slot, context: &context)
        return [
            "email": .string(context.book.emails[slot]), "type": .string(type),
            "cleared": cleared.map { .string(ISOTime.format($0)) } ?? .null,
        ]
    }
}
