import WireJSON

/// A stored segment: a named rule, never its membership.
public struct Segment: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var description: String
    /// The rule as the client wrote it: a JSON array of filters, combined with AND.
    public var filters: JSONValue
    /// The rule goes beyond the dashboard's surface (an `any` group or a non-built-in dimension).
    public var reviewNeeded: Bool
    public var createdAt: Double
    public var updatedAt: Double
    /// The last time the segment was resolved, exported or counted for a send.
    public var lastUsedAt: Double?

    public init(
        id: Int64, name: String, description: String, filters: JSONValue, reviewNeeded: Bool,
        createdAt: Double, updatedAt: Double, lastUsedAt: Double? = nil
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.filters = filters
        self.reviewNeeded = reviewNeeded
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastUsedAt = lastUsedAt
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "id": .int(id), "name": .string(name), "description": .string(description),
            "filters": filters, "review_needed": .bool(reviewNeeded),
            "created_at": .string(ISOTime.format(createdAt)), "updated_at": .string(ISOTime.format(updatedAt)),
        ]
        o["last_used_at"] = lastUsedAt.map { .string(ISOTime.format($0)) } ?? .null
        return .object(o)
    }
}

extension Segment: ResidentSize {
    /// Its name, description and rule as written.
    public var residentBytes: Int {
        ResidentBytes.string(name) + ResidentBytes.string(description) + filters.residentBytes
    }
}
