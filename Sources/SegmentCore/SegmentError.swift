import WireJSON

/// An error of the segment engine: a kind that can grow, a message a person can act on, and
/// the JSON path of the offending input when there is one.
///
/// The RPC layer maps kinds to wire codes (`invalidParams` → -32602 with `data.path`).
///
/// ```swift
/// throw SegmentError.invalidParams(path: "filters[1].value", "expected a date, got \"soon\"")
/// ```
public struct SegmentError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as an extensible code.
    public struct Kind: RawRepresentable, Hashable, Sendable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let invalidParams = Kind(rawValue: "invalid_params")
        public static let notFound = Kind(rawValue: "not_found")
        public static let conflict = Kind(rawValue: "conflict")
        public static let tooLarge = Kind(rawValue: "too_large")
        /// Not ready yet (a book still loading): retry shortly.
        public static let unavailable = Kind(rawValue: "unavailable")
        public static let `internal` = Kind(rawValue: "internal")
    }

    public var kind: Kind
    public var message: String
    /// JSON path of the offending input (`filters[1].value`, `contacts[3].email`).
    public var path: String?
    /// Figures a client acts on without parsing the message (`newest_cursor`), sent as
    /// members of the error's `data`.
    public var details: [String: JSONValue] = [:]

    public init(_ kind: Kind, _ message: String, path: String? = nil, details: [String: JSONValue] = [:]) {
        self.kind = kind
        self.message = message
        self.path = path
        self.details = details
    }

    public static func invalidParams(path: String, _ message: String) -> SegmentError {
        SegmentError(.invalidParams, message, path: path)
    }

    public static func notFound(_ message: String) -> SegmentError { SegmentError(.notFound, message) }
    public static func conflict(_ message: String) -> SegmentError { SegmentError(.conflict, message) }

    public var description: String {
        if let path, !path.isEmpty { return "\(path): \(message)" }
        return message
    }
}

/// Appends a member or index to a JSON path: `path.member("value")`, `path.index(2)`.
extension String {
    public func member(_ key: String) -> String { isEmpty ? key : "\(self).\(key)" }
    public func index(_ i: Int) -> String { "\(self)[\(i)]" }
}
