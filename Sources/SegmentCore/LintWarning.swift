import WireJSON

/// A lint finding: something about a segment that will probably hurt its user, said so a
/// person can act on it. Warnings never refuse a segment.
public struct LintWarning: Sendable, Equatable {
    public var code: String
    /// The JSON path the warning is about (`filters[1]`, `name`).
    public var path: String
    public var message: String

    public init(code: String, path: String, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var json: JSONValue { ["code": .string(code), "path": .string(path), "message": .string(message)] }
}

/// Thresholds for the lint rules.
public struct LintSettings: Sendable {
    /// A label that no contact has gained for this long is stale.
    public var staleLabelDays: Double = 90
    /// A segment not used for this long is unused.
    public var unusedDays: Double = 90

    public init(staleLabelDays: Double = 90, unusedDays: Double = 90) {
        self.staleLabelDays = staleLabelDays
        self.unusedDays = unusedDays
    }
}
