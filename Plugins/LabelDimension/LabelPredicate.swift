import SegmentCore

/// A compiled label filter.
struct LabelPredicate: ContactPredicate {
    enum Mode: Sendable { case all, any, none }

    let dimension: String
    let keys: [String]
    let mode: Mode
    var aspects: Set<String> { ["label"] }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        resolve(in: book, at: now, within: book.alive)
    }

    /// Starts from the candidates, so re-checking a few touched contacts combines only their
    /// blocks with the label bitmaps.
    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        let index = book.part(LabelDimension.Index.self) ?? LabelDimension.Index()
        switch mode {
        case .all:
            var set = candidates
            for key in keys {
                guard let members = index.labels[key]?.members else { return ContactSet() }
                set.formIntersection(members)
            }
            return set
        case .any, .none:
            let hit = candidates.intersection(anyOf: keys.compactMap { index.labels[$0]?.members })
            return mode == .any ? hit : candidates.subtracting(hit)
        }
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        let index = book.part(LabelDimension.Index.self) ?? LabelDimension.Index()
        let has = { (key: String) in index.labels[key]?.members.contains(slot) ?? false }
        switch mode {
        case .all: return keys.allSatisfy(has)
        case .any: return keys.contains(where: has)
        case .none: return !keys.contains(where: has)
        }
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let index = book.part(LabelDimension.Index.self) ?? LabelDimension.Index()
        let carried = index.labels(of: slot)
        let have = carried.isEmpty ? "no labels" : "labels \(carried.joined(separator: ", "))"
        let wanted = keys.joined(separator: ", ")
        switch mode {
        case .all: return "\(have); needs all of \(wanted)"
        case .any: return "\(have); needs any of \(wanted)"
        case .none: return "\(have); needs none of \(wanted)"
        }
    }
}
