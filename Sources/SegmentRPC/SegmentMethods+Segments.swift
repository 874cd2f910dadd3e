import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

extension SegmentMethods {
    var segmentMethods: [RPCMethod] {
        let segment: JSONValue = Schema.object([
            "id": Schema.integer, "name": Schema.string, "description": Schema.string, "filters": filtersSchema,
            "review_needed": Schema.boolean, "created_at": Schema.timestamp, "updated_at": Schema.timestamp,
            "last_used_at": ["type": ["string", "null"]], "warnings": Schema.array(["type": "object"]),
            "rebaselined_triggers": ["type": "array", "description": "update only: triggers that took the new rule as their baseline (this segment's and those of segments that contain it)"],
            "rewritten_segments": [
                "type": "array", "description": "update only, when a rename rewrote them: segments whose segment filters named this one by its old name",
                "items": ["type": "object", "properties": ["id": ["type": "integer"], "name": ["type": "string"]]],
            ],
        ])
        let group = Schema.object(["count": Schema.integer, "sample": Schema.array(Schema.string)])
        let preview: JSONValue = Schema.object([
            "dry_run": Schema.boolean, "segment": segment, "added": group, "removed": group, "kept": group,
            "audience": Schema.string, "as_of": Schema.timestamp, "version": Schema.integer,
        ])
        let id = Param.required("id", Schema.integer)
        let target = [Param.optional("id", Schema.integer), .optional("filters", filtersSchema)]
        let audience = Param.optional("audience", Schema.enumeration(["send", "all"]))
        return [
            bookMethod(
                "segments.create", access: .write, "Stores a named rule; names are unique (case-insensitively).",
                params: [.required("name", Schema.string), .required("filters", filtersSchema), .optional("description", Schema.string)],
                result: segment
            ) { engine, p, _ in
                let s = try await engine.createSegment(
                    name: try p.string("name"), description: try p.optionalString("description") ?? "", filters: try p.value("filters"))
                return withWarnings(s, engine.lint(filters: s.filters, name: s.name))
            },
            bookMethod(
                "segments.update", access: .write,
                "Changes a segment's name, description or rule; review_needed: false signs a rule off. dry_run: true saves nothing and answers who the edit would add, remove and keep.",
                params: [id, .optional("name", Schema.string), .optional("description", Schema.string), .optional("filters", filtersSchema),
                         .optional("review_needed", Schema.boolean), .optional("dry_run", Schema.boolean), audience],
                result: ["oneOf": [segment, preview]]
            ) { engine, p, _ in
                if try p.optionalBool("dry_run") == true {
                    let preview = try await engine.previewSegmentUpdate(
                        id: try p.int("id"), name: try p.optionalString("name"), description: try p.optionalString("description"),
                        filters: p.has("filters") ? try p.value("filters") : nil, reviewNeeded: try p.optionalBool("review_needed"),
                        audience: try Self.audience(p))
                    guard case .object(var o) = preview.json else { return .null }
                    o["segment"] = withWarnings(preview.segment, engine.lint(filters: preview.segment.filters, name: preview.segment.name))
                    return .object(o)
                }
                if p.has("audience") { throw SegmentError.invalidParams(path: "audience", "audience applies only to a dry run (dry_run: true)") }
                let (s, rebaselined, rewritten) = try await engine.updateSegmentAndTriggers(
                    id: try p.int("id"), name: try p.optionalString("name"), description: try p.optionalString("description"),
                    filters: p.has("filters") ? try p.value("filters") : nil, reviewNeeded: try p.optionalBool("review_needed"))
                guard case .object(var o) = withWarnings(s, engine.lint(filters: s.filters, name: s.name)) else { return .null }
                o["rebaselined_triggers"] = .array(rebaselined.map { .int($0) })
                if !rewritten.isEmpty { o["rewritten_segments"] = .array(rewritten.map(\.reference)) }
                return .object(o)
            },
            bookMethod("segments.get", "One stored segment.", params: [id], result: segment) { engine, p, _ in
                try engine.segment(id: try p.int("id")).json
            },
            bookMethod(
                "segments.delete", access: .write, "Deletes a stored segment; one with triggers needs force: true (which deletes them too).",
                params: [id, .optional("force", Schema.boolean)], result: Schema.object(["deleted": Schema.integer])
            ) { engine, p, _ in
                ["deleted": .int(try await engine.deleteSegment(id: try p.int("id"), force: try p.optionalBool("force") ?? false).id)]
            },
            bookMethod("segments.list", "Every stored segment, by id.", result: Schema.object(["segments": Schema.array(segment)])) { engine, _, _ in
                ["segments": .array(engine.segments().map(\.json))]
            },
            bookMethod(
                "segments.validate", "Checks a rule without storing it; reports every error with its path.",
                params: [.required("filters", ["type": "array"]),
                         .optional("id", ["type": "integer", "description": "the stored segment the rule is for: a reference back to it is reported as a cycle"])],
                result: Schema.object(["valid": Schema.boolean, "errors": Schema.array(Schema.object(["path": Schema.string, "message": Schema.string])),
                                       "warnings": Schema.array(["type": "object"]), "review_needed": Schema.boolean])
            ) { engine, p, _ in
                let filters = try p.value("filters")
                let id = try p.has("id") ? engine.segment(id: try p.int("id")).id : nil
                let v = engine.validate(filters: filters, segment: id)
                return [
                    "valid": .bool(v.valid), "review_needed": .bool(v.reviewNeeded),
                    "warnings": v.valid ? .array(engine.lint(filters: filters).map(\.json)) : [],
                    "errors": .array(v.errors.map { ["path": .string($0.path ?? ""), "message": .string($0.message)] }),
                ]
            },
            bookMethod(
                "segments.count", "Counts a stored (id) or ad-hoc (filters) rule: matched, sendable and why the rest is excluded.",
                params: target + [audience],
                result: Schema.object([
                    "matched": Schema.integer, "sendable": Schema.integer, "size": Schema.integer, "audience": Schema.string,
                    "excluded": Schema.object(["unsubscribed": Schema.integer, "hard_bounce": Schema.integer, "pending": Schema.integer, "suppressed": Schema.integer]),
                    "as_of": Schema.timestamp, "version": Schema.integer,
                ])
            ) { engine, p, _ in
                let audience = try Self.audience(p)
                switch try Self.target(p) {
                case .id(let id):
                    let result = try engine.count(segment: id, audience: audience).json
                    if audience == .send { await engine.markUsed(segment: id) }
                    return result
                case .filters(let filters): return try engine.count(filters: filters, audience: audience).json
                }
            },
            bookMethod(
                "segments.explain", "Why one contact is in or out: each filter with the value it looked at, and sendability.",
                params: target + [.required("email", Schema.string)],
                result: Schema.object([
                    "matches": Schema.boolean, "sendable": Schema.boolean, "in_send_audience": Schema.boolean,
                    "not_sendable_because": Schema.array(Schema.string), "summary": Schema.string,
                    "filters": Schema.array(Schema.object(["index": Schema.integer, "path": Schema.string, "matches": Schema.boolean, "detail": Schema.string])),
                ])
            ) { engine, p, _ in
                let book = engine.snapshot
                let filters: JSONValue
                switch try Self.target(p) {
                case .id(let id): filters = try engine.segment(id: id, in: book).filters
                case .filters(let f): filters = f
                }
                return try engine.explain(rule: try engine.compile(filters: filters, book: book), email: try p.string("email"), book: book)
            },
            bookMethod(
                "segments.lint", "Lint warnings for one segment (id) or every segment: overly_broad, stale_label, unused, suppression_by_segment, generic_name.",
                params: [.optional("id", Schema.integer)],
                result: Schema.object(["segments": Schema.array(Schema.object(["id": Schema.integer, "name": Schema.string, "warnings": Schema.array(["type": "object"])]))])
            ) { engine, p, _ in
                let segments = try p.optionalInt("id").map { id throws(SegmentError) in [try engine.segment(id: id)] } ?? engine.segments()
                return ["segments": .array(segments.map { s in
                    ["id": .int(s.id), "name": .string(s.name), "warnings": .array(engine.lint(segment: s).map(\.json))]
                })]
            },
        ]
    }

    enum Target { case id(Int64), filters(JSONValue) }

    /// A request names a stored segment by `id` or gives ad-hoc `filters`: exactly one of them.
    static func target(_ p: ParamReader) throws(SegmentError) -> Target {
        switch (p.has("id"), p.has("filters")) {
        case (true, false): return .id(try p.int("id"))
        case (false, true): return .filters(try p.value("filters"))
        case (true, true): throw .invalidParams(path: "filters", "give id or filters, not both")
        case (false, false): throw .invalidParams(path: "id", "required: id or filters")
        }
    }

    static func audience(_ p: ParamReader) throws(SegmentError) -> Audience {
        guard let raw = try p.optionalString("audience") else { return .send }
        guard let a = Audience(rawValue: raw) else { throw .invalidParams(path: "audience", "expected send or all, got \"\(raw)\"") }
        return a
    }
}

/// A segment's JSON with its lint warnings.
func withWarnings(_ segment: Segment, _ warnings: [LintWarning]) -> JSONValue {
    guard case .object(var o) = segment.json else { return segment.json }
    o["warnings"] = .array(warnings.map(\.json))
    return .object(o)
}
