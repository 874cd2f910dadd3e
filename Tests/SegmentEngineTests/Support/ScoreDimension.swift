import SegmentCore
import WireJSON

/// A test-only sixth dimension: an engagement score from 0 to 100, owned end to end by this
/// provider (contact key, stored document, index, filters, rendering), registered next to the five
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

    /// Slot → score.
    struct Index: BookPart {
        var scores: [Int: Int] = [:]
    }

    struct Change: ContactChange { let score: Int? }

    /// A contact's document is its score, one byte.
    func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
        stored.replacing?.forEach { index.scores[$0] = nil }
        try stored.forEachDocument { slot, doc in
            guard book.alive.contains(slot), let score = doc.first else { return }
            index.scores[slot] = Int(score)
        }
        book.setPart(index)
    }

    func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {
        let index = book.part(Index.self) ?? Index()
        slots.forEach { slot in emit(slot, index.scores[slot].map { [UInt8($0)] }) }
    }

    func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? {
        guard let raw = doc.object["score"] else { return nil }
        if raw.isNull { return Change(score: nil) }
        guard let score = raw.intValue, (0...100).contains(score) else {
            throw .invalidParams(path: doc.path.member("score"), "a score is an integer from 0 to 100")
        }
        return Change(score: Int(score))
    }

    func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
            for write in batch {
                guard let change = write.change as? Change else { continue }
                index.scores[write.slot] = change.score
                context.changed(write.slot, in: name)
            }
        }
    }

    func remove(slot: Int, context: inout WriteContext) throws {
        var index = context.book.takePart(Index.self) ?? Index()
        index.scores[slot] = nil
        context.book.setPart(index)
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
        let score = book.part(Index.self)?.scores[slot]
        return ["score": score.map { .int(Int64($0)) } ?? .null]
    }
}

struct ScorePredicate: ContactPredicate {
    enum Test: Sendable { case atLeast(Double), below(Double), isSet }
    let dimension: String
    let test: Test
    var aspects: Set<String> { ["score"] }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        guard let score = book.part(ScoreDimension.Index.self)?.scores[slot] else { return false }
        switch test {
        case .atLeast(let x): return Double(score) >= x
        case .below(let x): return Double(score) < x
        case .isSet: return true
        }
    }
}
