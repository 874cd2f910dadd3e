import WireJSON

/// A compiled filter: answers for the whole book at once and for one contact.
///
/// `resolve` is the bulk path (counts, streams); `matches` is the single-contact path
/// (triggers, explain). Both must agree; the oracle tests check they do.
///
/// ```swift
/// struct HasVIP: ContactPredicate {
///     let aspects: Set<String> = ["vip"]
///     func matches(slot: Int, in book: Book, at now: Double) -> Bool { ... }
/// }
/// ```
public protocol ContactPredicate: Sendable {
    /// Every slot that matches. May contain free slots; the rule intersects with `alive`.
    func resolve(in book: Book, at now: Double) -> ContactSet
    func matches(slot: Int, in book: Book, at now: Double) -> Bool
    /// Whether the answer can change with the clock alone (`within_last`).
    var isTimeDependent: Bool { get }
    /// The contact aspects that can change the answer (`"label"`, `"field:city"`), so a
    /// write re-checks only the rules it can affect.
    var aspects: Set<String> { get }
    /// A person-readable account of the value looked at, for `segments.explain`.
    func explain(slot: Int, in book: Book, at now: Double) -> String

    /// The members of `candidates` that match. Scanning predicates override it to test only
    /// the candidates, which is what makes a rule with a cheap bitmap filter and a column scan
    /// cost the scan of the few contacts the bitmap left.
    func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet

    /// Relative cost of `resolve`: bitmap algebra is 1, a column scan 10. A rule resolves its
    /// cheapest filters first and hands their result to the dearer ones as candidates.
    var cost: Int { get }
}

extension ContactPredicate {
    public var isTimeDependent: Bool { false }

    public var cost: Int { 1 }

    public func resolve(in book: Book, at now: Double, within candidates: ContactSet) -> ContactSet {
        resolve(in: book, at: now).intersection(candidates)
    }

    public func resolve(in book: Book, at now: Double) -> ContactSet {
        ContactSet.build(capacity: book.slotCount) { matches(slot: $0, in: book, at: now) }
    }

    public func explain(slot: Int, in book: Book, at now: Double) -> String {
        matches(slot: slot, in: book, at: now) ? "matches" : "does not match"
    }
}

/// How a dimension describes itself to `rpc.hello`, `rpc.discover` and proto-docs.
public struct DimensionDescriptor: Sendable {
    public struct Operator: Sendable {
        public var name: String
        /// The shape of `value`: `"string"`, `"[string]"`, `"[low, high]"`, `"{days: N}"`, `"none"`.
        public var value: String
        public var summary: String

        public init(_ name: String, value: String, _ summary: String) {
            self.name = name
            self.value = value
            self.summary = summary
        }
    }

    public var name: String
    public var summary: String
    public var operators: [Operator]
    /// Other keys a filter of this dimension takes (`field`, `event`, `lost`) and what they mean.
    public var keys: [String: String]

    public init(name: String, summary: String, operators: [Operator], keys: [String: String] = [:]) {
        self.name = name
        self.summary = summary
        self.operators = operators
        self.keys = keys
    }

    public var json: JSONValue {
        .object([
            "name": .string(name),
            "summary": .string(summary),
            "operators": .array(operators.map {
                .object(["name": .string($0.name), "value": .string($0.value), "summary": .string($0.summary)])
            }),
            "keys": .object(keys.mapValues { .string($0) }),
        ])
    }
}
