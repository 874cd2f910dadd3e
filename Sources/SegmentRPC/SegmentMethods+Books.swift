import Foundation
import LineRPC
import SegmentCore
import SegmentEngine
import WireJSON

extension SegmentMethods {
    var bookMethods: [RPCMethod] {
        let catalog = self.catalog, methods = self
        let name = Param.required("name", ["type": "string", "pattern": "^[a-z0-9_-]{1,64}$"])
        let book = Schema.object([
            "name": Schema.string, "state": Schema.enumeration(["loading", "ready", "failed"]), "contacts": Schema.integer,
            "segments": Schema.integer, "triggers": Schema.integer, "version": Schema.integer, "resident_bytes": Schema.integer,
            "error": Schema.string,
        ])
        return [
            method(
                "books.create", "Creates an empty Contact Book (admin). Names are 1–64 characters of a-z, 0-9, _ and -.",
                params: [name], result: book
            ) { p, request in
                try Self.requireAdmin(request, "books.create")
                let name = try p.string("name")
                try BookCatalog.validate(name: name)
                let engine = try await catalog.create(name)
                return Self.describe(BookCatalog.Status(name: name, state: "ready", engine: engine, error: nil, path: ""))
            },
            method(
                "books.list",
                "The books this connection may use (all on the Unix socket), with contacts, segments, triggers, version and resident size; `names` picks some.",
                params: [.optional("names", Schema.array(Schema.string))],
                result: Schema.object(["books": Schema.array(book)])
            ) { p, request in
                let grant = try Self.grant(of: request)
                var statuses = catalog.statuses()
                if p.has("names") {
                    let names = try p.strings("names")
                    for (index, name) in names.enumerated() {
                        try BookCatalog.validate(name: name, path: "names[\(index)]")
                        if let grant, !grant.mayUse(name) { throw RPCError.unauthorized("this token may not use book \"\(name)\"") }
                        guard catalog.contains(name) else { throw BookCatalog.noSuchBook(name) }
                    }
                    let wanted = Set(names)
                    statuses = statuses.filter { wanted.contains($0.name) }
                } else if let grant {
                    statuses = statuses.filter { grant.mayUse($0.name) }
                }
                return ["books": .array(statuses.map(Self.describe))]
            },
            method(
                "books.drop",
                "Drops a book and everything in it, its database files and its export folder (admin); `confirm` repeats the name.",
                params: [name, .required("confirm", Schema.string)],
                result: Schema.object(["dropped": Schema.string])
            ) { p, request in
                try Self.requireAdmin(request, "books.drop")
                let name = try p.string("name")
                try BookCatalog.validate(name: name)
                guard try p.string("confirm") == name else {
                    throw SegmentError.invalidParams(path: "confirm", "must repeat the book's name (\"\(name)\") to drop it")
                }
                try await catalog.drop(name)
                try? FileManager.default.removeItem(atPath: methods.exportDirectory(for: name))
                return ["dropped": .string(name)]
            },
        ]
    }

    /// One book as `books.list` shows it.
    static func describe(_ status: BookCatalog.Status) -> JSONValue {
        var out: [String: JSONValue] = ["name": .string(status.name), "state": .string(status.state)]
        if let engine = status.engine {
            let book = engine.snapshot
            out["contacts"] = .int(Int64(book.contactCount))
            out["segments"] = .int(Int64(book.segments.count))
            out["triggers"] = .int(Int64(book.triggers.count))
            out["version"] = .int(book.version)
            out["resident_bytes"] = .int(Int64(engine.residentBytes))
        }
        if let error = status.error { out["error"] = .string(error) }
        return .object(out)
    }

    /// `book`'s export folder, created if missing.
    public func preparedExportDirectory(for book: String) throws(SegmentError) -> String {
        let directory = exportDirectory(for: book)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SegmentError(.internal, "cannot create the export folder \(directory): \(error.localizedDescription)")
        }
        return directory
    }
}
