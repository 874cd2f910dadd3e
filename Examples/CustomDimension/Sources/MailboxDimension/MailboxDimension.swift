import SegmentCore
import WireJSON

/// Contacts by the mailbox provider behind their address: `{"dimension": "mailbox", "op":
/// "in", "value": ["gmail", "outlook"]}` (or `not_in`). Senders pace and warm up by provider;
/// this is the filter for it.
///
/// The provider follows from the email, which never changes for a contact, so the dimension
/// reads no key of a contact document and stores nothing: it sets a new contact's provider
/// when the contact is written, and rebuilds its index from the addresses when a book loads.
/// `contacts.get` shows it as `mailbox`, which is read-only: an upsert that sends it back is
/// refused as an unknown key (it is not a contact key of this dimension).
public struct MailboxDimension: DimensionProvider {
    /// Providers by name, with the domains that are theirs; any other domain is `other`.
    public static let providers: [(name: String, domains: [String])] = [
        ("gmail", ["gmail.com", "googlemail.com"]),
        ("outlook", ["outlook.com", "hotmail.com", "live.com", "msn.com"]),
        ("yahoo", ["yahoo.com", "ymail.com", "rocketmail.com"]),
        ("icloud", ["icloud.com", "me.com", "mac.com"]),
    ]
    /// Every name a filter may give, `other` last.
    public static let names = providers.map(\.name) + ["other"]
    static let codeByDomain: [String: UInt8] = Dictionary(
        uniqueKeysWithValues: providers.enumerated().flatMap { code, provider in provider.domains.map { ($0, UInt8(code)) } })

    /// The provider of `email`, as its index in `names`.
    public static func code(of email: String) -> UInt8 {
        let domain = email.split(separator: "@").last.map { $0.lowercased() } ?? ""
        return codeByDomain[domain] ?? UInt8(names.count - 1)
    }

    /// Its part of the book: a code per contact and a bitmap per provider.
    struct Index: BookPart { var column = CodeColumn(codeCount: MailboxDimension.names.count) }

    public init() {}

    public let name = "mailbox"
    public var descriptor: DimensionDescriptor {
        let list = Self.names.joined(separator: ", ")
        return DimensionDescriptor(name: name, summary: "the mailbox provider behind the address", operators: [
            .init("in", value: "[string]", "contacts at one of these providers (\(list))"),
            .init("not_in", value: "[string]", "contacts at none of them"),
        ])
    }
    public var contactKeys: [String] { [] }

    // Writing: nothing to validate; a new contact gets its provider.
    public func prepare(_ doc: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> (any ContactChange)? { nil }

    public func apply(batch: [ContactWrite], context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, context in
            for write in batch where write.isNew {
                index.column.set(Self.code(of: context.book.emails[write.slot]), at: write.slot)
            }
        }
    }

    public func remove(slot: Int, context: inout WriteContext) throws {
        WriteContext.withPart(in: &context, orNew: Index.init) { index, _ in index.column.set(CodeColumn.none, at: slot) }
    }

    // Storing: nothing (no contact is ever marked changed, so no document is asked for).
    public func documents(for slots: ContactSet, in book: Book, _ emit: (Int, [UInt8]?) -> Void) {}

    public func load(_ stored: StoredParts, into book: inout Book) throws {
        var index = stored.replacing == nil ? Index() : book.takePart(Index.self) ?? Index()
        let alive = book.alive, emails = book.emails
        (stored.replacing ?? alive).forEach { slot in
            index.column.set(alive.contains(slot) ? Self.code(of: emails[slot]) : CodeColumn.none, at: slot)
        }
        book.setPart(index)
    }

    // Reading.
    public func compile(_ filter: ParamReader, book: Book, time: ISOTime) throws(SegmentError) -> any ContactPredicate {
        try filter.rejectUnknownKeys(allowed: ["dimension", "op", "value"])
        let op = try filter.op(of: name, allowed: ["in", "not_in"])
        var codes: [UInt8] = []
        for (i, provider) in try filter.nonEmptyStrings().enumerated() {
            guard let code = Self.names.firstIndex(of: provider.lowercased()) else {
                throw .invalidParams(
                    path: "\(filter.path.member("value"))[\(i)]",
                    "unknown mailbox provider \"\(provider)\"; expected one of \(Self.names.joined(separator: ", "))")
            }
            codes.append(UInt8(code))
        }
        return MailboxIn(codes: codes, negated: op == "not_in")
    }

    public func render(slot: Int, book: Book) -> [String: JSONValue] {
        let code = book.part(Index.self)?.column.code(at: slot) ?? CodeColumn.none
        return code == CodeColumn.none ? [:] : ["mailbox": .string(Self.names[Int(code)])]
    }

    public func column(_ name: String, book: Book) -> ColumnReader? {
        guard name == "mailbox" else { return nil }
        let index = book.part(Index.self) ?? Index()
        return ColumnReader { slot in
            let code = index.column.code(at: slot)
            return code == CodeColumn.none ? .null : .string(Self.names[Int(code)])
        }
    }
    public var columnNames: [String] { ["mailbox"] }
}

/// `in` (or `not_in`) a set of providers.
struct MailboxIn: ContactPredicate {
    let codes: [UInt8]
    let negated: Bool
    var aspects: Set<String> { ["mailbox"] }

    func resolve(in book: Book, at now: Double) -> ContactSet {
        let column = book.part(MailboxDimension.Index.self)?.column ?? CodeColumn(codeCount: MailboxDimension.names.count)
        let chosen = column.union(of: codes, within: book.alive)
        return negated ? book.alive.subtracting(chosen) : chosen
    }

    func matches(slot: Int, in book: Book, at now: Double) -> Bool {
        let code = book.part(MailboxDimension.Index.self)?.column.code(at: slot) ?? CodeColumn.none
        return codes.contains(code) != negated
    }

    func explain(slot: Int, in book: Book, at now: Double) -> String {
        let code = book.part(MailboxDimension.Index.self)?.column.code(at: slot) ?? CodeColumn.none
        return "mailbox is \(code == CodeColumn.none ? "unknown" : MailboxDimension.names[Int(code)])"
    }
}
