import WireJSON

/// A dimension whose filters stand for other stored rules (the `segment` dimension: "in
/// segment VIPs"). The registry compiles its filters with a ``RuleCompiler``, through which
/// it compiles the segments they name, cycles refused.
public protocol RuleReferencingProvider: DimensionProvider {
    func compile(_ filter: ParamReader, book: Book, time: ISOTime, rules: RuleCompiler) throws(SegmentError) -> any ContactPredicate
}

/// A predicate that stands for another stored segment's rule: `explain` shows that
/// segment's own filters beneath it, and the engine finds a rule's references through it.
public protocol SegmentReferencePredicate: ContactPredicate {
    var segmentID: Int64 { get }
    var segmentName: String { get }
    /// The referenced segment's rule, compiled.
    var rule: CompiledRule { get }
}

/// Compiles the stored segments a rule refers to, refusing a cycle and references nested
/// deeper than ``maxDepth``.
public struct RuleCompiler: Sendable {
    let registry: DimensionRegistry
    /// The segments being compiled, outermost first (the segment a `segments.update` edits
    /// comes first, so a reference back to it is a cycle).
    public let chain: [Int64]
    /// References followed so far from the rule being compiled.
    let depth: Int
    /// The filters the whole rule may still hold, the referenced rules' included: one
    /// budget for the whole expansion, so nested references cannot multiply it.
    let budget: FilterBudget

    /// The deepest a chain of references may go.
    public static let maxDepth = 8

    /// `segment`'s rule, compiled. `path` names the referring filter's value in errors: an
    /// error inside the referenced rule is reported there, naming the segment.
    public func compile(segment: Segment, book: Book, time: ISOTime, path: String) throws(SegmentError) -> CompiledRule {
        if let start = chain.firstIndex(of: segment.id) {
            let names = (chain[start...] + [segment.id]).map { id in book.segments[id].map { "\"\($0.name)\"" } ?? "segment \(id)" }
            throw .invalidParams(path: path, "segment reference cycle: \(names.joined(separator: " → ")); a segment cannot contain itself")
        }
        guard depth < Self.maxDepth else {
            throw .invalidParams(path: path, "segment references nest at most \(Self.maxDepth) deep")
        }
        do throws(SegmentError) {
            return try registry.compile(
                filters: segment.filters, path: "filters", book: book, time: time, chain: chain + [segment.id], depth: depth + 1, budget: budget)
        } catch where error.message.hasPrefix("segment reference cycle") || error.message.hasPrefix("segment references nest")
            || error.message.hasPrefix("a rule may hold at most") {
            throw SegmentError.invalidParams(path: path, error.message)
        } catch {
            throw .invalidParams(
                path: path, "segment \(segment.id) \"\(segment.name)\" does not compile: \(error.path.map { "\($0): " } ?? "")\(error.message)")
        }
    }
}

/// The filters a rule may still hold while it compiles (shared by the nested compiles of the
/// segments it refers to).
final class FilterBudget: @unchecked Sendable {
    var remaining: Int
    init(_ remaining: Int) { self.remaining = remaining }
}

extension CompiledRule {
    /// The ids of the segments this rule refers to, directly.
    public var referencedSegments: Set<Int64> {
        Self.leafPredicates(root).reduce(into: []) { ids, p in
            if let reference = p as? any SegmentReferencePredicate { ids.insert(reference.segmentID) }
        }
    }
}

extension Segment {
    /// The segments of `book` whose rules refer to segment `id` (by id or by name), directly
    /// or (unless `directly`) through others, by id.
    public static func referrers(of id: Int64, in book: Book, directly: Bool = false) -> [Segment] {
        var found: Set<Int64> = []
        var queue = [id]
        while let target = queue.popLast() {
            guard let name = book.segments[target]?.name.lowercased() else { continue }
            for segment in book.segments.values where !found.contains(segment.id) && segment.id != id {
                let refers = filters(of: segment.filters, dimension: "segment").contains { filter in
                    filter["value"]?.intValue == target || filter["value"]?.stringValue?.lowercased() == name
                }
                if refers {
                    found.insert(segment.id)
                    if !directly { queue.append(segment.id) }
                }
            }
        }
        return found.sorted().compactMap { book.segments[$0] }
    }
}
