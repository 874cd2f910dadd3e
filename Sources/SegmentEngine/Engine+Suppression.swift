import SegmentCore
import SegmentStore
import WireJSON

extension Engine {
    /// Adds addresses to the account's suppression list (they need not be contacts).
    public func suppress(emails: [String], reason: String?) async throws -> Int {
        try checkBatch(emails)
        for (i, email) in emails.enumerated() { try Self.checkEmail(email.trimmingSpaces, path: "emails".index(i)) }
        return try await write(cause: "suppression.add") { context in
            var added = 0
            for email in emails.map(\.trimmingSpaces) where !context.book.suppressedEmails.contains(email.lowercased()) {
                try context.sql.execute(
                    "INSERT INTO suppression(email_key, email, reason, added_at) VALUES (?, ?, ?, ?)",
                    [.text(email.lowercased()), .text(email), reason.map(SQLValue.text) ?? .null, .real(context.now)])
                context.book.setSuppressed(email, true)
                if let slot = context.book.slot(of: email) { context.touched.insert(slot) }
                added += 1
            }
            return added
        }
    }

    /// Removes addresses from the suppression list.
    public func unsuppress(emails: [String]) async throws -> Int {
        try checkBatch(emails)
        return try await write(cause: "suppression.remove") { context in
            var removed = 0
            for email in emails.map(\.trimmingSpaces) where context.book.suppressedEmails.contains(email.lowercased()) {
                try context.sql.execute("DELETE FROM suppression WHERE email_key = ?", [.text(email.lowercased())])
                context.book.setSuppressed(email, false)
                if let slot = context.book.slot(of: email) { context.touched.insert(slot) }
                removed += 1
            }
            return removed
        }
    }

    /// Whether an address is suppressed, with the reason and time it was added.
    public func suppression(of email: String) async throws -> JSONValue {
        let key = email.trimmingSpaces.lowercased()
        let rows = try await store.read { sql in
            var found: [JSONValue] = []
            try sql.forEachRow("SELECT email, reason, added_at FROM suppression WHERE email_key = ?", [.text(key)]) { row in
                found.append(["email": .string(row[0].string ?? ""), "reason": row[1].string.map(JSONValue.string) ?? .null,
                              "added_at": .string(ISOTime.format(row[2].double ?? 0))])
            }
            return found
        }
        guard case .object(var entry)? = rows.first else { return ["email": .string(email), "suppressed": false] }
        entry["suppressed"] = true
        return .object(entry)
    }

    /// The suppression list in address order, a page at a time (`after`: the last address of the previous page).
    public func suppressionList(after: String?, limit: Int) async throws -> JSONValue {
        let key = after?.lowercased() ?? ""
        return try await store.read { sql in
            var items: [JSONValue] = []
            var last: String?
            try sql.forEachRow(
                "SELECT email, reason, added_at, email_key FROM suppression WHERE email_key > ? ORDER BY email_key LIMIT ?",
                [.text(key), .integer(Int64(limit))]
            ) { row in
                items.append(["email": .string(row[0].string ?? ""), "reason": row[1].string.map(JSONValue.string) ?? .null,
                              "added_at": .string(ISOTime.format(row[2].double ?? 0))])
                last = row[3].string
            }
            return ["items": .array(items), "next": items.count == limit ? last.map(JSONValue.string) ?? .null : .null]
        }
    }

    private func checkBatch(_ emails: [String]) throws(SegmentError) {
        guard emails.count <= configuration.maxBatch else {
            throw SegmentError(.tooLarge, "at most \(configuration.maxBatch) emails per call, got \(emails.count)", path: "emails")
        }
    }
}
