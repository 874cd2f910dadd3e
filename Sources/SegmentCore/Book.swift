/// One immutable state of the Contact Book: what every read works on.
///
/// The book is a value. The writer mutates a copy and publishes it after the commit, so a
/// reader holding a snapshot sees one consistent state for as long as it keeps it (an
/// export keeps its snapshot while writes go on). Arrays are copy-on-write: a write copies
/// only the columns it touches.
///
/// Slots are the contacts' SQLite rowids. Core columns (email, creation time, liveness) live
/// here; everything else lives in the providers' parts, keyed by dimension name.
public struct Book: Sendable {
    /// Monotonic count of committed writes; persisted, so a restart answers with the same version.
    public internal(set) var version: Int64 = 0
    /// The last change record of the book's fleet applied to this state (0 outside a fleet).
    public private(set) var changeSequence: Int64 = 0
    /// How many times other nodes' changes were applied to reach this state (a fleet node): a
    /// batch validated against a state with another count is validated again.
    public private(set) var foreignChanges = 0
    /// Every slot that holds a contact.
    public internal(set) var alive = ContactSet()
    /// Slot → email as given (empty for a free slot). Chunked: a write copies what it touches.
    public internal(set) var emails = ChunkedArray<String>()
    /// Slot → creation time.
    public internal(set) var createdAt = ChunkedArray<Double>()
    /// Lower-cased email → slot, holding only slots (the addresses are in `emails`); chunked
    /// copy-on-write, so a write copies the few chunks it touches.
    var emailIndex = HashIndex()
    /// Lower-cased suppressed addresses (account level; they need not be contacts).
    public internal(set) var suppressedEmails: Set<String> = []
    /// Slots of contacts whose address is suppressed.
    public internal(set) var suppressed = ContactSet()
    /// Stored segments by id.
    public internal(set) var segments: [Int64: Segment] = [:]
    /// Automation triggers by id, with their membership baselines.
    public var triggers: [Int64: Trigger] = [:]
    /// The providers' indexes, keyed by their type.
    var parts: [ObjectIdentifier: any BookPart] = [:]

    public init() {}

    /// One past the highest slot: the length every per-slot column must have.
    public var slotCount: Int { emails.count }

    public var contactCount: Int { emailIndex.count }

    /// The slot of `email`, compared case-insensitively.
    public func slot(of email: String) -> Int? { slot(ofKey: email.lowercased()) }

    /// The slot of the contact whose lower-cased address is `key`.
    public func slot(ofKey key: String) -> Int? {
        emailIndex.find(hash: key.hashValue) { Self.address(emails[$0], is: key) }
    }

    /// Whether `stored` lower-cased equals `key` (itself lower-cased) as Swift compares
    /// strings, without building the lower-cased copy while both are ASCII. Any non-ASCII byte
    /// on either side takes the full comparison: String equality is canonical equivalence
    /// ("a;b" equals "a\u{037E}b"), which the hash agrees with.
    static func address(_ stored: String, is key: String) -> Bool {
        var s = stored.utf8.makeIterator(), k = key.utf8.makeIterator()
        while true {
            let a = s.next(), b = k.next()
            if a == nil && b == nil { return true }
            if (a ?? 0) >= 0x80 || (b ?? 0) >= 0x80 { return stored.lowercased() == key }
            guard let a, let b else {
                // One ended: equal only if what is left of the other could still be
                // equivalent to nothing, which takes a non-ASCII byte.
                return (a == nil ? key.utf8 : stored.utf8).contains { $0 >= 0x80 } && stored.lowercased() == key
            }
            if (a &- 0x41 < 26 ? a | 0x20 : a) != b { return false }
        }
    }

    /// Adds the parts `other` has and this book lacks: how indexes loaded in parallel, each on
    /// its own copy of the core book, are gathered into one.
    public mutating func adoptParts(of other: Book) {
        for (name, part) in other.parts where parts[name] == nil { parts[name] = part }
    }

    /// The index of type `Index` a provider keeps in this book, or `nil` before it was first
    /// stored. The type is the key: there is no name to get wrong.
    public func part<Index: BookPart>(_ type: Index.Type) -> Index? {
        parts[ObjectIdentifier(type)] as? Index
    }

    /// Stores a provider's index (replacing the one of the same type).
    public mutating func setPart<Index: BookPart>(_ index: Index) {
        parts[ObjectIdentifier(Index.self)] = index
    }

    /// Takes a provider's index out of the book so it can be mutated without a second
    /// reference forcing a copy; put it back with `setPart`.
    public mutating func takePart<Index: BookPart>(_ type: Index.Type) -> Index? {
        parts.removeValue(forKey: ObjectIdentifier(type)) as? Index
    }
}

/// What a provider keeps in a `Book`: its own type (the key it is found by), a value copied
/// with the book. Give a shared core type (a `CodeColumn`) a wrapper of the provider's own,
/// so two providers never meet under one key.
public protocol BookPart: Sendable {}

extension Book {
}

extension Book: ResidentSize {
    /// An estimate of the heap this book's state holds: the core columns, the email index,
    /// suppressions, segments and triggers, and every provider's part whose type conforms to
    /// `ResidentSize` (one that does not counts 0 beyond its box). What the server reports as
    /// a book's resident size.
    ///
    /// A snapshot shares most of its chunks with the books before and after it, so this is
    /// what the book holds, not what dropping it would free. See `ResidentSize` for what the
    /// estimate leaves out.
    public var residentBytes: Int {
        var bytes = alive.residentBytes + emails.residentBytes + createdAt.residentBytes + emailIndex.residentBytes
        bytes += ResidentBytes.set(suppressedEmails) + suppressed.residentBytes
        bytes += ResidentBytes.dictionary(segments) + ResidentBytes.dictionary(triggers)
        return parts.reduce(bytes + ResidentBytes.dictionary(parts)) { $0 + ResidentBytes.existential($1.value) }
    }
}

extension Book {
    /// Adds a contact at `slot` (the rowid SQLite assigned); `key` is `email` lower-cased.
    public mutating func addContact(slot: Int, email: String, key: String, createdAt time: Double) {
        place(slot: slot, email: email, createdAt: time)
        emailIndex.insert(hash: key.hashValue, value: slot)
        if !suppressedEmails.isEmpty { suppressed.update(slot, member: suppressedEmails.contains(key)) }
    }

    /// The slot's core columns and liveness.
    private mutating func place(slot: Int, email: String, createdAt time: Double) {
        if slot >= emails.count {
            emails.grow(to: slot + 1, fill: "")
            createdAt.grow(to: slot + 1, fill: .nan)
        }
        emails[slot] = email
        createdAt[slot] = time
        alive.insert(slot)
    }

    /// Start-up: adds a stored contact without its email-index entry; the index is built in
    /// bulk by `buildEmailIndex()` (in parallel with the providers' loading) and installed with
    /// `install(emailIndex:)`. Load suppressions first: membership is decided here.
    public mutating func loadContact(slot: Int, email: String, createdAt time: Double) {
        place(slot: slot, email: email, createdAt: time)
        if !suppressedEmails.isEmpty && suppressedEmails.contains(email.lowercased()) { suppressed.insert(slot) }
    }

    /// The email index of every live contact, built in bulk (start-up).
    public func buildEmailIndex() -> HashIndex {
        var index = HashIndex(capacity: alive.count)
        alive.forEach { index.insert(hash: emails[$0].lowercased().hashValue, value: $0) }
        return index
    }

    public mutating func install(emailIndex: HashIndex) { self.emailIndex = emailIndex }

    /// Frees `slot`; providers clear their own parts.
    public mutating func removeContact(slot: Int) {
        guard slot < emails.count, alive.contains(slot) else { return }
        emailIndex.remove(hash: emails[slot].lowercased().hashValue) { $0 == slot }
        emails[slot] = ""
        createdAt[slot] = .nan
        alive.remove(slot)
        suppressed.remove(slot)
    }

    public mutating func setSuppressed(_ email: String, _ isSuppressed: Bool) {
        let key = email.lowercased()
        if isSuppressed { suppressedEmails.insert(key) } else { suppressedEmails.remove(key) }
        if let slot = slot(ofKey: key) { suppressed.update(slot, member: isSuppressed) }
    }

    public mutating func setSegment(_ segment: Segment) { segments[segment.id] = segment }

    public mutating func removeSegment(id: Int64) { segments.removeValue(forKey: id) }

    public mutating func bumpVersion(to v: Int64) { version = v }

    package mutating func setChangeSequence(_ sequence: Int64) { changeSequence = sequence }

    /// Other nodes' changes were applied to `base` to make this state (or it was reloaded).
    package mutating func markForeignChanges(since base: Book) { foreignChanges = base.foreignChanges + 1 }
}
