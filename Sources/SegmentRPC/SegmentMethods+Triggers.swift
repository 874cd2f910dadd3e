import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

extension SegmentMethods {
    var triggerMethods: [RPCMethod] {
        let methods = self
        let trigger = Schema.object([
            "id": Schema.integer, "segment": Schema.integer, "on": Schema.array(Schema.enumeration(["enter", "exit"])),
            "created_at": Schema.timestamp, "members": Schema.integer, "time_dependent": Schema.boolean,
        ])
        let event = Schema.object([
            "cursor": Schema.integer, "trigger": Schema.integer, "segment": Schema.integer, "email": Schema.string,
            "type": Schema.enumeration(["enter", "exit"]), "at": Schema.timestamp, "cause": Schema.string,
        ])
        return [
            bookMethod(
                "triggers.create", access: .write, "Fires enter/exit events for a segment from now on; existing members fire only with include_existing.",
                params: [.required("segment", Schema.integer), .optional("on", Schema.array(Schema.enumeration(["enter", "exit"]))),
                         .optional("include_existing", Schema.boolean)],
                result: trigger
            ) { engine, p, _ in
                let on = try p.optionalStrings("on") ?? ["enter"]
                for (i, kind) in on.enumerated() where kind != "enter" && kind != "exit" {
                    throw SegmentError.invalidParams(path: "on".index(i), "expected enter or exit, got \"\(kind)\"")
                }
                return try await engine.createTrigger(
                    segment: try p.int("segment"), onEnter: on.contains("enter"), onExit: on.contains("exit"),
                    includeExisting: try p.optionalBool("include_existing") ?? false
                ).json
            },
            bookMethod("triggers.list", "Every trigger.", result: Schema.object(["triggers": Schema.array(trigger)])) { engine, _, _ in
                ["triggers": .array(engine.triggers().map(\.json))]
            },
            bookMethod(
                "triggers.delete", access: .write, "Deletes a trigger; its past events stay in the log.",
                params: [.required("id", Schema.integer)], result: Schema.object(["deleted": Schema.integer])
            ) { engine, p, _ in
                ["deleted": .int(try await engine.deleteTrigger(id: try p.int("id")).id)]
            },
            bookMethod(
                "events.read", "Events after a cursor, oldest first; pass `next` as `after` to page on. `newest_cursor`: the newest event's cursor when read.",
                params: [.optional("after", Schema.integer), .optional("limit", ["type": "integer", "minimum": 1, "maximum": 10_000]),
                         .optional("trigger", Schema.integer)],
                result: Schema.object(["events": Schema.array(event), "next": Schema.integer, "newest_cursor": Schema.integer])
            ) { engine, p, _ in
                let after = try p.optionalInt("after", in: 0...Int64.max) ?? 0
                let limit = Int(try p.optionalInt("limit", in: 1...10_000) ?? 100)
                let (events, newest) = try await engine.readEvents(after: after, limit: limit, triggers: try p.optionalInt("trigger").map { [$0] })
                return ["events": .array(events.map(\.json)), "next": .int(events.last?.cursor ?? after), "newest_cursor": .int(newest)]
            },
            bookMethod(
                "events.subscribe",
                "Streams events after `after` (default: the newest, i.e. live only) from the log at the reader's pace, then live, as `events.event` notifications; ends with {ended, last_cursor} when cancelled.",
                params: [.optional("after", Schema.integer), .optional("triggers", Schema.array(Schema.integer))],
                result: Schema.object(["ended": Schema.string, "last_cursor": Schema.integer]),
                streaming: true
            ) { engine, p, request in
                let after = try p.optionalInt("after", in: 0...Int64.max)
                let start: Int64
                if let after { start = after } else { start = try await engine.lastCursor() }
                try await engine.checkCursor(start)
                let triggers = try p.optionalArray("triggers").map { items throws(SegmentError) -> Set<Int64> in
                    var ids = Set<Int64>()
                    for (i, item) in items.enumerated() {
                        guard let id = item.intValue else { throw .invalidParams(path: "triggers".index(i), "expected a trigger id") }
                        guard engine.snapshot.triggers[id] != nil else {
                            throw .invalidParams(path: "triggers".index(i), "no trigger with id \(id)")
                        }
                        ids.insert(id)
                    }
                    return ids
                }
                let timeout = Duration.milliseconds(Int64((engine.configuration.subscriberTimeoutSeconds * 1_000).rounded()))
                let subscription = EventSubscription(
                    feed: engine.eventFeed(after: start, triggers: triggers), timeout: timeout, request: request,
                    book: try Self.bookName(p), subscribers: engine.subscribers,
                    delivered: methods.streamed.deliveredEvents, logger: methods.logger)
                return try await subscription.run(after: start)
            }.endingOnShutdown(),
        ]
    }
}

extension RPCMethod {
    /// This method, cancelled as soon as a graceful shutdown starts.
    func endingOnShutdown() -> RPCMethod {
        var method = self
        method.endsOnShutdown = true
        return method
    }
}
