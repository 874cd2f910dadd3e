import WireJSON

/// A segment rule compiled against a registry: filters ANDed, `any` groups ORed.
public struct CompiledRule: Sendable {
    public indirect enum Node: Sendable {
        case all([Node])
        case any([Node], path: String)
        case leaf(any ContactPredicate, dimension: String, path: String)
    }

    public let root: Node
    /// The rule uses an `any` group or a dimension outside the dashboard's five.
    public let reviewNeeded: Bool

    public init(root: Node, reviewNeeded: Bool) {
        self.root = root
        self.reviewNeeded = reviewNeeded
    }

    /// Every live contact the rule matches.
    public func resolve(in book: Book, at now: Double) -> ContactSet {
        var set = Self.resolve(root, book: book, now: now)
        set.formIntersection(book.alive)
        return set
    }

    /// The live contacts among `candidates` the rule matches: bitmap filters intersect with
    /// the candidates, column filters test only them when they are few.
    public func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        Self.resolve(root, book: book, now: now, within: candidates.intersection(book.alive))
    }

    public func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        book.alive.contains(slot) && Self.matches(root, slot: slot, book: book, now: now)
    }

    public var isTimeDependent: Bool { Self.leaves(root).contains { $0.isTimeDependent } }

    public var aspects: Set<String> { Self.leaves(root).reduce(into: []) { $0.formUnion($1.aspects) } }

    private static func resolve(_ node: Node, book: Book, now: Double) -> ContactSet {
        resolve(node, book: book, now: now, within: book.alive)
    }

    /// Resolves `node` among `candidates`. AND children run cheapest first, each among the
    /// survivors of the ones before; OR children each among the same candidates.
    private static func resolve(_ node: Node, book: Book, now: Double, within candidates: ContactSet) -> ContactSet {
        switch node {
        case .leaf(let p, _, _):
            // Bitmap filters (cost 1) start from the candidates. Scanning filters test
            // candidates one by one only when few are left; a dense set is cheaper to scan in
            // full and intersect.
            let within = p.cost == 1 || candidates.count * 4 < book.slotCount
            return within ? p.resolve(in: book, at: now, within: candidates) : p.resolve(in: book, at: now).intersection(candidates)
        case .all(let children):
            var set = candidates
            for child in children.sorted(by: { cost($0) < cost($1) }) {
                set = resolve(child, book: book, now: now, within: set)
                if set.isEmpty { break }
            }
            return set
        case .any(let children, _):
            var set = ContactSet(capacity: book.slotCount)
            for child in children { set.formUnion(resolve(child, book: book, now: now, within: candidates)) }
            return set
        }
    }

    private static func cost(_ node: Node) -> Int {
        switch node {
        case .leaf(let p, _, _): return p.cost
        case .all(let c), .any(let c, _): return c.reduce(0) { $0 + cost($1) }
        }
    }

    private static func matches(_ node: Node, slot: Int, book: Book, now: Double) -> Bool {
        switch node {
        case .leaf(let p, _, _): return p.matches(slot: slot, in: book, at: now)
        case .all(let children): return children.allSatisfy { matches($0, slot: slot, book: book, now: now) }
        case .any(let children, _): return children.contains { matches($0, slot: slot, book: book, now: now) }
        }
    }

    /// What the rule costs to resolve, as the planner counts it (a bitmap filter is 1).
    public var cost: Int { Self.cost(root) }

    static func leafPredicates(_ node: Node) -> [any ContactPredicate] { leaves(node) }

    private static func leaves(_ node: Node) -> [any ContactPredicate] {
        switch node {
        case .leaf(let p, _, _): return [p]
        case .all(let c), .any(let c, _): return c.flatMap(leaves)
        }
    }
}
