import WireJSON

/// The send audience as a capability a dimension declares: the registered provider that
/// conforms (the first, if several do) decides who may be mailed before the suppression
/// list, why the others are left out, and what `explain`, `contacts.count` and lint say
/// about it. The engine names no dimension: with no such provider every contact is sendable
/// unless suppressed, and a dimension that does not conform cannot change counts.
///
/// ```swift
/// extension StatusDimension: AudienceProvider {
///     public func sendable(in book: Book) -> ContactSet { contacts(with: "active", in: book) }
///     public func exclusions(in book: Book) -> [(reason: String, contacts: ContactSet)] {
///         ["unsubscribed", "hard_bounce", "pending"].map { ($0, contacts(with: $0, in: book)) }
///     }
///     ...
/// }
/// ```
public protocol AudienceProvider: DimensionProvider {
    /// The contacts it lets into the send audience (the suppression list is the core's).
    func sendable(in book: Book) -> ContactSet
    /// The contacts it keeps out, by reason, in the order `excluded` reports them (a contact
    /// counts under the first reason that holds); every reason is listed, even when empty.
    func exclusions(in book: Book) -> [(reason: String, contacts: ContactSet)]
    /// Why `slot` is kept out (`explain`'s `not_sendable_because`), nil when it is let in.
    func whyNotSendable(slot: Int, in book: Book) -> String?
    /// Contacts by the standing it decides on (`contacts.count`'s `by_status`).
    func breakdown(in book: Book) -> [String: Int]
    /// When `filter` only restates the send audience, how lint's `overly_broad` says so
    /// (`"status = active: this is the whole active list"`); nil for any other filter.
    func restatement(of filter: JSONValue) -> String?
}

extension DimensionRegistry {
    /// The provider that decides the send audience, if one is registered.
    public var audience: (any AudienceProvider)? {
        providers.lazy.compactMap { $0 as? any AudienceProvider }.first
    }
}
