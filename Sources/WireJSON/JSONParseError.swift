/// Why a JSON text was rejected, and where.
///
/// `offset` is the zero-based byte offset in the input where the problem was detected.
/// The message is meant for people (it ends up in `-32700` parse-error replies).
///
/// ```swift
/// do { _ = try JSONParser.parse("{\"a\":1,\"a\":2}") }
/// catch { print(error) }  // duplicate key "a" at byte 7
/// ```
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A short human-readable reason, without the position.
    public var message: String
    /// Zero-based byte offset in the input where the problem was detected.
    public var offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(message) at byte \(offset)" }
}
