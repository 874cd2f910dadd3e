import SegmentCore
import WireJSON

/// A test-only sixth dimension: an engagement score from 0 to 100, owned end to end by this
/// provider (contact key, table, index, filters, rendering), registered next to the five
/// built-ins without any change to the core.
///
/// Contact key: `score` (an integer 0…100, or null to clear). Filters: `at_least` and `below`
/// (a number), `is_set` (no value).
struct ScoreDimension: DimensionProvider {
    let name = "score"
    var contactKeys: [String] { ["score"] }

    var descriptor: DimensionDescriptor {
        DimensionDescriptor(
            name: name, summary: "Engagement score, 0 to 100.",
            operators: [
                .init("at_least", value: "number", "the score is at least the value"),
                .init("below", value: "number", "the score is below the value (contacts without a score do not match)"),
                .init("is_set", value: "none", "the contact has a score"),
            ])
    }

    var migrations: [StoreMigration] {
        [StoreMigration("score.v1", sql: "CREATE TABLE contact_score (contact_id INTEGER PRIMARY KEY, score INTEGER NOT NULL)")]
    }

    /// Slot → score.
    struct Index: Sendable {
        var scores: [Int: Int] = [:]
    }

    struct Change: ContactChange { let score: Int? }

    func load(from sql: any SQLExecutor, into book: inout Book) throws {
        var index = Index()
        try sql.forEachRow("SELECT contact_id, score FROM contact_score", []) { row in
            guard let slot = row[0].int64.map(Int.init), let score = row[1].int64, book.alive.contains(slot) else { return }
            index.scores[slot] = Int(score)
        }
        book.setPart(name, index)
    }

    func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        guard let raw = doc.object["score"] else { return nil }
        if raw.isNull { return Change(score: nil) }
        guard let score = raw.intValue, (0...100).contains(score) else {
            throw .invalidParams(path: doc.path.member("score"), "a score is an integer from 0 to 100")
        }
        return Change(score: Int(score))
    }

    func apply(_ change: (any ContactChange)?, slot: Int, isNew: Bool, context: inout WriteContext) throws {
        guard let change = change as? Change else { return }
        var index = context.book.takePart(name, as: Index.self) ?? Index()
        defer { context.book.setPart(name, index) }
        if let score = change.score {
            try context.sql.execute(
                "INSERT OR REPLACE INTO contact_score(contact_id, score) VALUES (?, ?)", [.integer(Int64(slot)), .integer(Int64(score))])
        } else {
            try context.sql.execute("DELETE FROM contact_score WHERE contact_id = ?", [.integer(Int64(slot))])
        }
        index.scores[slot] = change.score
        context.touched.insert(slot)
    }

    func remove(slot: Int, context: inout WriteContext) throws {
        try context.sql.execute("DELETE FROM contact_score WHERE contact_id = ?", [.integer(Int64(slot))])
        var index = context.book.takePart(name, as: Index.self) ?? Index()
        index.scores[slot] = nil
        context.book.setPart(name, index)
    }

    func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
        let op = try filter.op(of: name, allowed: ["at_least", "below", "is_set"])
        if op == "is_set" {
            try filter.rejectValue(for: op)
            return ScorePredicate(dimension: name, test: .isSet)
        }
        let raw = try filter.value("value")
        guard let x = raw.doubleValue else { throw .invalidParams(path: filter.path.member("value"), "expected a number, got \(raw.typeName)") }
        return ScorePredicate(dimension: name, test: op == "at_least" ? .atLeast(x) : .below(x))
    }

    func render(slot: Int, book: Book) -> [String: JSONValue] {
        let score = book.part(name, as: Index.self)?.scores[slot]
        return ["score": score.map { .int(Int64($0)) } ?? .null]
    }
}

struct ScorePredicate: ContactPredicate {
    enum Test: Sendable { case atLeast(Double), below(Double), isSet }
    let dimension: String
    let test: Test
    var aspects: Set<String> { ["score"] }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        guard let score = book.part(dimension, as: ScoreDimension.Index.self)?.scores[slot] else { return false }
        switch test {
        case .atLeast(let x): return Double(score) >= x
        case .below(let x): return Double(score) < x
        case .isSet: return true
        }
    }
}
