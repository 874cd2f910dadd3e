import SegmentCore
import WireJSON

/// Segment references: `{"dimension": "segment", "op": "in"|"not_in", "value": ID_OR_NAME}`
/// matches the contacts another stored segment matches (or does not). The referenced rule is
/// compiled into the referring one (``RuleCompiler``), so a count resolves it like its own
/// filters, a trigger re-checks a contact whose data the inner rule looks at, and
/// time-dependence carries over. A cycle is refused at compile time, naming it.
///
/// It keeps nothing of its own: no contact keys, no documents; its state is the segments.
public struct SegmentDimension: RuleReferencingProvider {
    public init() {}

    public let name = "segment"
    public var descriptor: DimensionDescriptor {
        DimensionDescriptor(name: name, summary: "Membership of another stored segment (its id, or its name, case-insensitive).", operators: [
            .init("in", value: "integer|string", "contacts the named segment's rule matches (in any audience: status and suppression are not its business)"),
            .init("not_in", value: "integer|string", "contacts it does not match"),
        ])
    }
    public var contactKeys: [String] { [] }

    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? { nil }
    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {}
    public func remove(slot: Int, context: inout WriteContext) throws {}
    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {}
    public func load(_ stored: StoredParts, into book: inout Book) throws {}
    public func render(slot: Int, book: Book) -> [String: JSONValue] { [:] }

    /// Not reached: ``DimensionRegistry`` compiles a ``RuleReferencingProvider``'s filters
    /// with the method below.
    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        throw .invalidParams(path: filter.path, "a segment filter is compiled by a registry, with the rules it refers to")
    }

    public func compile(_ filter: ParamReader, book: Book, time: ISOTime, rules: RuleCompiler) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
        let op = try filter.op(of: name, allowed: ["in", "not_in"])
        let path = filter.path.member("value")
        let value = try filter.value("value")
        let segment: Segment
        if let id = value.intValue {
            guard let found = book.segments[id] else { throw .invalidParams(path: path, "no segment with id \(id)") }
            segment = found
        } else if let wanted = value.stringValue {
            let key = wanted.lowercased()
            guard let found = book.segments.values.first(where: { $0.name.lowercased() == key }) else {
                throw .invalidParams(path: path, "no segment named \"\(wanted)\"")
            }
            segment = found
        } else {
            throw .invalidParams(path: path, "expected a segment id (integer) or name (string), got \(value.typeName)")
        }
        let rule = try rules.compile(segment: segment, book: book, time: time, path: path)
        return SegmentMembership(segmentID: segment.id, segmentName: segment.name, rule: rule, negated: op == "not_in")
    }
}

/// In (or not in) another segment's rule.
struct SegmentMembership: SegmentReferencePredicate {
    let segmentID: Int64
    let segmentName: String
    let rule: CompiledRule
    let negated: Bool

    var aspects: Set<String> { rule.aspects }
    var isTimeDependent: Bool { rule.isTimeDependent }
    var cost: Int { max(1, rule.cost) }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        let members = rule.resolve(in: book, at: now)
        return negated ? book.alive.subtracting(members) : members
    }

    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        let members = rule.resolve(in: book, at: now, within: candidates)
        return negated ? candidates.intersection(book.alive).subtracting(members) : members
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        rule.matches(slot: slot, in: book, at: now) != negated
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let inside = rule.matches(slot: slot, in: book, at: now)
        return "\(inside ? "in" : "not in") segment \(segmentID) \"\(segmentName)\" (its filters are under \"segment\")"
    }
}
