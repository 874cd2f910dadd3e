import WireJSON

/// An automation trigger: fires `enter`/`exit` events when contacts start or stop matching
/// a segment's rule. Its membership baseline is persisted, so a restart fires nothing.
public struct Trigger: Sendable {
    public var id: Int64
    public var segmentID: Int64
    public var onEnter: Bool
    public var onExit: Bool
    public var createdAt: Double
    /// The segment's rule, compiled.
    public var rule: CompiledRule
    /// Contacts that matched at the last evaluation.
    public var members: ContactSet

    public init(id: Int64, segmentID: Int64, onEnter: Bool, onExit: Bool, createdAt: Double, rule: CompiledRule, members: ContactSet) {
        self.id = id
        self.segmentID = segmentID
        self.onEnter = onEnter
        self.onExit = onExit
        self.createdAt = createdAt
        self.rule = rule
        self.members = members
    }

    public var json: JSONValue {
        var on: [JSONValue] = []
        if onEnter { on.append("enter") }
        if onExit { on.append("exit") }
        return [
            "id": .int(id), "segment": .int(segmentID), "on": .array(on), "created_at": .string(ISOTime.format(createdAt)),
            "members": .int(Int64(members.count)), "time_dependent": .bool(rule.isTimeDependent),
        ]
    }
}

/// One entry of the durable event log.
public struct TriggerEvent: Sendable, Equatable {
    public var cursor: Int64
    public var trigger: Int64
    public var segment: Int64
    public var email: String
    /// `enter` or `exit`.
    public var type: String
    public var at: Double
    /// The method whose write caused it, or `clock`.
    public var cause: String

    public init(cursor: Int64, trigger: Int64, segment: Int64, email: String, type: String, at: Double, cause: String) {
        self.cursor = cursor
        self.trigger = trigger
        self.segment = segment
        self.email = email
        self.type = type
        self.at = at
        self.cause = cause
    }

    public var json: JSONValue {
        [
            "cursor": .int(cursor), "trigger": .int(trigger), "segment": .int(segment), "email": .string(email),
            "type": .string(type), "at": .string(ISOTime.format(at)), "cause": .string(cause),
        ]
    }
}

extension Trigger: ResidentSize {
    /// Its membership baseline; the compiled rule (a few predicates) is left out.
    public var residentBytes: Int { members.residentBytes }
}
