import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

extension SegmentMethods {
    /// `contacts.list` page sizes: each item is a whole contact document.
    static let defaultContactPage = 100
    static let maxContactPage = 1_000

    var contactMethods: [RPCMethod] {
        let failed = Schema.array(Schema.object(["index": Schema.integer, "error": Schema.string]))
        return [
            bookMethod(
                "contacts.upsert", access: .write, "Creates or updates contacts by email; a bad item fails alone unless atomic.",
                params: [.required("contacts", Schema.array(["type": "object", "required": ["email"]])), .optional("atomic", Schema.boolean)],
                result: Schema.object(["created": Schema.integer, "updated": Schema.integer, "failed": failed])
            ) { engine, p, _ in
                try await engine.upsert(contacts: try p.array("contacts"), atomic: try p.optionalBool("atomic") ?? false).json
            },
            bookMethod(
                "contacts.get", "The whole contact: every dimension's part.",
                params: [.required("email", Schema.string)], result: ["type": "object"]
            ) { engine, p, _ in
                let email = try p.string("email")
                guard let contact = engine.contact(email: email) else { throw SegmentError.notFound("no contact \(email)") }
                return contact
            },
            bookMethod(
                "contacts.list",
                "Contacts in a stable order (creation), a page at a time: pass `next` as `after`; optional filters and email prefix.",
                params: [
                    .optional("after", ["type": "integer", "minimum": 0, "description": "the `next` of the previous page"]),
                    .optional("limit", ["type": "integer", "minimum": 1, "maximum": .int(Int64(Self.maxContactPage)), "default": .int(Int64(Self.defaultContactPage))]),
                    .optional("filters", filtersSchema), .optional("email_prefix", Schema.string),
                ],
                result: Schema.object(["items": Schema.array(["type": "object"]), "next": ["type": ["integer", "null"]]])
            ) { engine, p, _ in
                let after = try p.optionalInt("after", in: 0...(1 << 53))
                let limit = try p.optionalInt("limit", in: 1...Int64(Self.maxContactPage)) ?? Int64(Self.defaultContactPage)
                return try engine.listContacts(
                    after: after, limit: Int(limit), filters: p.has("filters") ? try p.value("filters") : nil,
                    emailPrefix: try p.optionalString("email_prefix"))
            },
            bookMethod(
                "contacts.delete", access: .write, "Deletes contacts by email; unknown emails are skipped.",
                params: [.required("emails", Schema.array(Schema.string))], result: Schema.object(["deleted": Schema.integer])
            ) { engine, p, _ in
                ["deleted": .int(Int64(try await engine.delete(emails: try p.strings("emails"))))]
            },
            bookMethod(
                "contacts.count", "Contacts in total and by status.",
                result: Schema.object(["total": Schema.integer, "by_status": ["type": "object"]])
            ) { engine, _, _ in
                let (total, byStatus) = engine.countContacts()
                return ["total": .int(Int64(total)), "by_status": .object(byStatus.mapValues { .int(Int64($0)) })]
            },
        ]
    }

    var suppressionMethods: [RPCMethod] {
        return [
            bookMethod(
                "suppression.add", access: .write, "Adds addresses to the account's suppression list; they are never sendable.",
                params: [.required("emails", Schema.array(Schema.string)), .optional("reason", Schema.string)],
                result: Schema.object(["added": Schema.integer])
            ) { engine, p, _ in
                ["added": .int(Int64(try await engine.suppress(emails: try p.strings("emails"), reason: try p.optionalString("reason"))))]
            },
            bookMethod(
                "suppression.remove", access: .write, "Removes addresses from the suppression list.",
                params: [.required("emails", Schema.array(Schema.string))], result: Schema.object(["removed": Schema.integer])
            ) { engine, p, _ in
                ["removed": .int(Int64(try await engine.unsuppress(emails: try p.strings("emails"))))]
            },
            bookMethod(
                "suppression.check", "Whether an address is suppressed, with the reason and when.",
                params: [.required("email", Schema.string)],
                result: Schema.object(["email": Schema.string, "suppressed": Schema.boolean, "reason": ["type": ["string", "null"]], "added_at": Schema.timestamp])
            ) { engine, p, _ in
                try await engine.suppression(of: try p.string("email"))
            },
            bookMethod(
                "suppression.list", "The suppression list in address order, a page at a time; pass `next` as `after`.",
                params: [.optional("after", Schema.string), .optional("limit", ["type": "integer", "minimum": 1, "maximum": 10_000])],
                result: Schema.object(["items": Schema.array(["type": "object"]), "next": ["type": ["string", "null"]]])
            ) { engine, p, _ in
                let limit = try p.optionalInt("limit", in: 1...10_000) ?? 1_000
                return try await engine.suppressionList(after: try p.optionalString("after"), limit: Int(limit))
            },
        ]
    }
}
