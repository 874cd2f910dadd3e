import WireJSON

/// The dimensions this server knows, registered explicitly at start, in one place.
///
/// ```swift
/// var registry = DimensionRegistry()
/// registry.register(StatusDimension())
/// registry.register(LabelDimension())
/// let rule = try registry.compile(filters: filtersJSON, book: book, time: ISOTime())
/// ```
public struct DimensionRegistry: Sendable {
    public private(set) var providers: [any DimensionProvider] = []
    private var byName: [String: Int] = [:]
    private var keyOwner: [String: Int] = [:]

    /// The most filters one rule may hold, groups included, and the deepest group nesting.
    public static let maxFilters = 1_000
    public static let maxDepth = 8

    /// The columns a resolution or export returns when a call names none: `email` (the
    /// core's), then what whoever registers the dimensions chooses (segmentd: `name`,
    /// `status`).
    public var defaultColumns = ["email"]

    public init() {}

    /// Adds a dimension. Two providers may not share a name or a contact-document key: check
    /// ``refusal(for:)`` first where that depends on input (this stops the process).
    public mutating func register(_ provider: some DimensionProvider) {
        if let refusal = refusal(for: provider) { preconditionFailure(refusal) }
        for key in provider.contactKeys { keyOwner[key] = providers.count }
        byName[provider.name] = providers.count
        providers.append(provider)
    }

    /// Why `provider` cannot be registered, or nil if it can: its name is taken or is not an
    /// identifier, or a contact-document key it claims is the core's or another dimension's.
    public func refusal(for provider: some DimensionProvider) -> String? {
        if byName[provider.name] != nil { return "two dimensions are named \"\(provider.name)\": each needs a name of its own" }
        // The name is part of its document table's name (`part_NAME`).
        guard Self.isIdentifier(provider.name) else {
            return "a dimension's name is 1 to 32 lower-case letters, digits or _, starting with a letter: \"\(provider.name)\""
        }
        for key in provider.contactKeys {
            if Self.coreKeys.contains(key) { return "contact key \"\(key)\" of dimension \(provider.name) is the core's" }
            if let owner = keyOwner[key] { return "contact key \"\(key)\" of dimension \(provider.name) is already dimension \(providers[owner].name)'s" }
        }
        for method in provider.methods {
            if let owner = providers.first(where: { $0.methods.contains { $0.name == method.name } }) {
                return "method \(method.name) of dimension \(provider.name) is already dimension \(owner.name)'s"
            }
        }
        return nil
    }

    /// `[a-z][a-z0-9_]{0,31}`.
    static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), name.utf8.count <= 32 else { return false }
        return name.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_") }
    }

    public func provider(named name: String) -> (any DimensionProvider)? {
        byName[name].map { providers[$0] }
    }

    /// Keys of a contact document the core reads itself.
    public static let coreKeys: Set<String> = ["email"]

    /// Every key a contact document may hold.
    public var contactKeys: Set<String> {
        Self.coreKeys.union(keyOwner.keys)
    }

    /// Compiles a rule (a JSON array of filters, ANDed) with errors naming the filter's path.
    /// `chain`: the stored segments being compiled, outermost first (``RuleCompiler``); a
    /// stored segment's own rule is compiled with its id, so a reference back to it is a cycle.
    public func compile(
        filters: JSONValue, path: String = "filters", book: Book, time: ISOTime, chain: [Int64] = []
    ) throws(SegmentError) -> CompiledRule {
        try compile(filters: filters, path: path, book: book, time: time, chain: chain, depth: 0, budget: FilterBudget(Self.maxFilters))
    }

    /// A rule compiled as part of another (``RuleCompiler``): `depth` references followed,
    /// `budget` shared with the outer rule.
    func compile(
        filters: JSONValue, path: String, book: Book, time: ISOTime, chain: [Int64], depth: Int, budget: FilterBudget
    ) throws(SegmentError) -> CompiledRule {
        guard let items = filters.arrayValue else {
            throw .invalidParams(path: path, "expected an array of filters, got \(filters.typeName)")
        }
        var review = false
        var nodes: [CompiledRule.Node] = []
        let rules = RuleCompiler(registry: self, chain: chain, depth: depth, budget: budget)
        for (i, item) in items.enumerated() {
            nodes.append(try compileNode(item, path: path.index(i), depth: 1, budget: budget, review: &review, book: book, time: time, rules: rules))
        }
        return CompiledRule(root: .all(nodes), reviewNeeded: review)
    }

    private func compileNode(
        _ item: JSONValue, path: String, depth: Int, budget: FilterBudget, review: inout Bool, book: Book, time: ISOTime, rules: RuleCompiler
    ) throws(SegmentError) -> CompiledRule.Node {
        budget.remaining -= 1
        guard budget.remaining >= 0 else {
            throw .invalidParams(path: path, "a rule may hold at most \(Self.maxFilters) filters (those of the segments it refers to included)")
        }
        let filter = try ParamReader(item, path: path)
        if filter.object["any"] != nil {
            review = true
            guard depth < Self.maxDepth else {
                throw .invalidParams(path: path, "groups may nest at most \(Self.maxDepth) deep")
            }
            try filter.rejectUnknownKeys(allowed: ["any"])
            let children = try filter.array("any")
            guard !children.isEmpty else { throw .invalidParams(path: path.member("any"), "an any group needs at least one filter") }
            var nodes: [CompiledRule.Node] = []
            for (i, child) in children.enumerated() {
                nodes.append(try compileNode(child, path: path.member("any").index(i), depth: depth + 1, budget: budget, review: &review, book: book, time: time, rules: rules))
            }
            return .any(nodes, path: path)
        }
        let name = try filter.string("dimension")
        guard let provider = provider(named: name) else {
            let known = providers.map(\.name).joined(separator: ", ")
            throw .invalidParams(path: path.member("dimension"), "unknown dimension \"\(name)\"; known: \(known)")
        }
        if !provider.isDashboardDimension { review = true }
        let predicate = if let referencing = provider as? any RuleReferencingProvider {
            try referencing.compile(filter, book: book, time: time, rules: rules)
        } else {
            try provider.compile(filter, book: book, time: time)
        }
        return .leaf(predicate, dimension: name, path: path)
    }
}
