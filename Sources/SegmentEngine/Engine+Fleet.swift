import Dispatch
import SegmentCore
import SegmentStore
import Synchronization
import WireJSON

/// One committed write, as the nodes of a fleet learn it: its place in the book's gapless
/// sequence of changes, the book's version after it, the contacts it touched, and what else
/// it changed (read whole by the nodes that apply it).
struct ChangeRecord: Sendable {
    struct Kinds: OptionSet, Sendable {
        let rawValue: Int64
        static let segments = Kinds(rawValue: 1)
        static let triggers = Kinds(rawValue: 2)
        static let suppression = Kinds(rawValue: 4)
        static let events = Kinds(rawValue: 8)
        static let definitions = Kinds(rawValue: 16)
    }

    var sequence: Int64
    var version: Int64
    var contacts: ContactSet
    var kinds: Kinds

    /// Slots as ascending deltas in LEB128 varints: a batch of consecutive new contacts is a
    /// byte each.
    static func encode(_ set: ContactSet) -> [UInt8] {
        var out: [UInt8] = []
        var last = -1
        set.forEach { slot in
            var delta = UInt64(slot - last)
            last = slot
            while delta >= 0x80 {
                out.append(UInt8(delta & 0x7F) | 0x80)
                delta >>= 7
            }
            out.append(UInt8(delta))
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> ContactSet {
        var set = ContactSet()
        var last = -1, value: UInt64 = 0, shift: UInt64 = 0
        for byte in bytes {
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 != 0 {
                shift += 7
                continue
            }
            last += Int(value)
            set.insert(last)
            value = 0
            shift = 0
        }
        return set
    }
}

extension Engine {
    /// The change sequence a fleet node has applied (0 outside a fleet).
    static func changeSequence(_ sql: any SQLExecutor) throws -> Int64 {
        var sequence: Int64 = 0
        try sql.forEachRow("SELECT value FROM meta WHERE key = 'change_sequence'", []) { sequence = $0[0].int64 ?? 0 }
        return sequence
    }

    /// Appends this write's change record (fleet mode), inside its transaction: what the other
    /// nodes read to apply it. Called under the book's lock with `base` caught up, so the
    /// sequence is gapless.
    func appendChange(_ context: WriteContext, base: Book, events: [TriggerEvent], sql: any SQLExecutor) throws -> Int64 {
        var kinds: ChangeRecord.Kinds = []
        if base.segments != context.book.segments { kinds.insert(.segments) }
        if Set(base.triggers.keys) != Set(context.book.triggers.keys) || kinds.contains(.segments) { kinds.insert(.triggers) }
        if base.suppressedEmails.count != context.book.suppressedEmails.count { kinds.insert(.suppression) }
        if !events.isEmpty || context.prunedEvents { kinds.insert(.events) }
        if context.storedDefinitions { kinds.insert(.definitions) }
        let touched = context.touched.union(context.storedContacts)
        let sequence = base.changeSequence + 1
        // One statement (PostgreSQL's data-modifying WITH: a fleet's store): each statement is
        // a round trip, and they run one after another before the commit.
        try sql.execute(
            """
            WITH logged AS (INSERT INTO change_log(sequence, version, contacts, kinds, at) VALUES (?, ?, ?, ?, ?))
            INSERT INTO meta(key, value) VALUES ('change_sequence', ?), ('version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """,
            [
                .integer(sequence), .integer(context.book.version), .blob(ChangeRecord.encode(touched)), .integer(kinds.rawValue),
                .real(context.now), .integer(sequence), .integer(context.book.version),
            ])
        return sequence
    }

    /// Brings `base` up to the latest change in the store: the changes other nodes made since,
    /// applied by reading what they touched (work in proportion to the changes). A node behind
    /// the oldest change record still kept reloads the book. Returns `nil` when `base` is
    /// current.
    func catchUp(_ base: Book, sql: any SQLExecutor) throws -> CaughtUp? {
        let latest = try Self.changeSequence(sql)
        guard latest > base.changeSequence else { return nil }
        var (book, applied) = try catchUpBook(base, latest: latest, sql: sql)
        book.markForeignChanges(since: base)
        // Events other nodes appended: this node's log extent, and its subscribers' wake-up.
        let log = try EventLogSummary(sql)
        return CaughtUp(book: book, log: log, applied: applied)
    }

    /// The book caught up, and the change records applied (nil: the whole book was reloaded).
    private func catchUpBook(_ base: Book, latest: Int64, sql: any SQLExecutor) throws -> (Book, Int?) {
        var records: [ChangeRecord] = []
        try sql.forEachRow(
            "SELECT sequence, version, contacts, kinds FROM change_log WHERE sequence > ? ORDER BY sequence", [.integer(base.changeSequence)]
        ) { row in
            records.append(ChangeRecord(
                sequence: row[0].int64 ?? 0, version: row[1].int64 ?? 0, contacts: ChangeRecord.decode(row[2].bytes ?? []),
                kinds: .init(rawValue: row[3].int64 ?? 0)))
        }
        // Pruned past what this node has: a gap. Read the whole book instead.
        guard records.first?.sequence == base.changeSequence + 1, records.last?.sequence == latest else {
            var book = try BookLoader(registry: registry, time: time).load(sql)
            book.setChangeSequence(latest)
            return (book, nil)
        }
        var touched = ContactSet()
        var kinds: ChangeRecord.Kinds = []
        for record in records {
            touched.formUnion(record.contacts)
            kinds.formUnion(record.kinds)
        }
        var book = base
        try applyChanges(touched: touched, kinds: kinds, to: &book, sql: sql)
        book.bumpVersion(to: records.last!.version)
        book.setChangeSequence(latest)
        return (book, records.count)
    }

    /// Re-reads the touched contacts (core columns and every provider's document), and the
    /// suppressions, segments and triggers when a change says they moved.
    private func applyChanges(touched: ContactSet, kinds: ChangeRecord.Kinds, to book: inout Book, sql: any SQLExecutor) throws {
        if kinds.contains(.suppression) {
            var emails: [String] = []
            try sql.forEachRow("SELECT email FROM suppression", []) { row in if let email = row[0].string { emails.append(email) } }
            let now = Set(emails.map { $0.lowercased() })
            for key in book.suppressedEmails where !now.contains(key) { book.setSuppressed(key, false) }
            for email in emails where !book.suppressedEmails.contains(email.lowercased()) { book.setSuppressed(email, true) }
        }
        if !touched.isEmpty {
            var present: [Int: (String, Double)] = [:]
            var ids: [SQLValue] = []
            touched.forEach { ids.append(.integer(Int64($0))) }
            try PartStorage.forEachRow("SELECT id, email, created_at FROM contact WHERE id IN", ids, sql: sql) { row in
                guard let id = row[0].int64, let email = row[1].string else { return }
                present[Int(id)] = (email, row[2].double ?? 0)
            }
            touched.forEach { slot in
                if let (email, createdAt) = present[slot] {
                    if !book.alive.contains(slot) { book.addContact(slot: slot, email: email, key: email.lowercased(), createdAt: createdAt) }
                } else {
                    book.removeContact(slot: slot)
                }
            }
        }
        if !touched.isEmpty || kinds.contains(.definitions) {
            // Each provider's documents of the touched contacts, and its definitions.
            for provider in registry.providers { try PartStorage.reload(provider, slots: touched, into: &book, sql: sql) }
        }
        if kinds.contains(.segments) {
            let loader = BookLoader(registry: registry, time: time)
            for id in Array(book.segments.keys) { book.removeSegment(id: id) }
            for segment in try loader.loadSegments(sql) { book.setSegment(segment) }
        }
        if kinds.contains(.triggers) {
            book.triggers = [:]
            try BookLoader(registry: registry, time: time).loadTriggers(sql, into: &book)
        } else if !touched.isEmpty && !book.triggers.isEmpty {
            // Baselines moved where the touched contacts are: re-read those chunks.
            let chunks = Set(touched.nonEmptyChunks)
            var rows: [Int64: [Int: [UInt8]]] = [:]
            let list = chunks.sorted().map { SQLValue.integer(Int64($0)) }
            try PartStorage.forEachRow("SELECT trigger_id, chunk, bits FROM trigger_baseline WHERE chunk IN", list, sql: sql) { row in
                if let id = row[0].int64, let chunk = row[1].int64, let bits = row[2].bytes { rows[id, default: [:]][Int(chunk)] = bits }
            }
            for id in Array(book.triggers.keys) {
                for chunk in chunks {
                    book.triggers[id]!.members.setChunk(chunk, bytes: rows[id]?[chunk] ?? [UInt8](repeating: 0, count: ContactSet.chunkSlots / 8))
                }
            }
        }
    }
}

/// A catch-up's outcome: the book brought up to date, the event log as it now is, and the
/// change records applied (nil: the book was reloaded whole).
struct CaughtUp: Sendable {
    var book: Book
    var log: EventLogSummary
    var applied: Int?
}

/// How a node of a fleet keeps up with the others.
public struct FleetSettings: Sendable {
    /// The longest a lost notification can delay applying a change: the node also polls.
    public var catchUpInterval: Duration = .seconds(1)
    /// How long a read with `min_version` waits for this node to apply it, unless it says.
    public var readWait: Duration = .seconds(1)
    /// Change records older than this are pruned; a node further behind reloads its book.
    public var changeHorizonSeconds: Double = 3_600

    public init() {}
}

/// What a fleet node did to keep up, for `server.stats` and the metrics.
struct FleetState: Sendable {
    /// Change records applied, and whole-book reloads (a node behind the pruned records).
    var applied = 0
    var reloads = 0
    /// When the store last answered this node (a write or a catch-up), by the engine's clock.
    var lastReached: Double?
    /// The newest change sequence and version the store had when last asked.
    var storeVersion: Int64 = 0
    /// Whether this node held the book's clock lead when it last asked (each clock tick).
    var clockLeader = false
}

extension Engine {
    /// Applies what other nodes changed since this node's state (fleet mode), between this
    /// node's writes. Returns whether anything was applied.
    @discardableResult
    public func refresh() async throws -> Bool {
        guard configuration.fleet != nil else { return false }
        let caughtUp = try await store.serially({ [self] sql -> CaughtUp? in
            let storeVersion = try Self.storedVersion(sql)
            self.fleetState.withLock { $0.storeVersion = storeVersion }
            return try self.catchUp(self.snapshot, sql: sql)
        }, afterCommit: { [self] (caughtUp: CaughtUp?) in
            self.fleetState.withLock { $0.lastReached = self.now }
            guard let caughtUp else { return }
            self.published.withLock { $0 = caughtUp.book }
            self.adoptLog(caughtUp)
        })
        return caughtUp != nil
    }

    /// Whether this node runs the book's clock re-evaluation and retention: always alone; in
    /// a fleet, while it holds the book's clock lock (taken here when free).
    /// Asking may open a connection: it runs on a thread of Dispatch's, not the caller's.
    public func holdsClockLead() async -> Bool {
        let store = self.store
        let leads = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: store.holdsClockLead()) }
        }
        fleetState.withLock { $0.clockLeader = leads }
        return leads
    }

    /// Deletes change records older than the fleet's horizon (the clock leader does, with
    /// retention), keeping the newest: a node further behind than what is kept reloads the
    /// book instead of applying changes.
    func pruneChanges() async throws {
        guard let fleet = configuration.fleet else { return }
        let horizon = now - fleet.changeHorizonSeconds
        try await store.peek { sql in
            try sql.execute(
                "DELETE FROM change_log WHERE at < ? AND sequence < (SELECT MAX(sequence) FROM change_log)", [.real(horizon)])
        }
    }

    /// A fleet node validates a write against the latest state, not against what it happens
    /// to have applied (a field another node defined a moment ago is known). Outside a fleet,
    /// nothing to do.
    /// Costs one statement when nothing is new.
    func catchUpBeforeValidating() async throws {
        guard configuration.fleet != nil else { return }
        let latest = try await store.peek { sql in try Self.changeSequence(sql) }
        if latest > snapshot.changeSequence { try await refresh() }
    }

    /// The book's version in the store (what this node's lag is measured against).
    static func storedVersion(_ sql: any SQLExecutor) throws -> Int64 {
        var version: Int64 = 0
        try sql.forEachRow("SELECT value FROM meta WHERE key = 'version'", []) { version = $0[0].int64 ?? 0 }
        return version
    }

    /// Takes the event log's extent after a committed catch-up, and wakes subscribers for the
    /// events other nodes appended; counts the records applied (or the reload).
    func adoptLog(_ caughtUp: CaughtUp) {
        fleetState.withLock { state in
            if let applied = caughtUp.applied { state.applied += applied } else { state.reloads += 1 }
        }
        if let applied = caughtUp.applied { metrics.applied(changes: applied) } else { metrics.reloaded() }
        let newest = caughtUp.log.newestCursor
        eventLog.withLock { $0 = caughtUp.log }
        if newest > 0 { hub.publish(through: newest) }
    }

    /// Waits, at most `timeout` (the fleet's `readWait` when nil), until this node has applied
    /// `version`; asks the store at once rather than waiting for a notification.
    public func waitFor(version: Int64, timeout: Duration? = nil) async throws {
        guard snapshot.version < version else { return }
        let limit = timeout ?? configuration.fleet?.readWait ?? .zero
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        var delay = Duration.milliseconds(2)
        while snapshot.version < version && clock.now < deadline {
            if configuration.fleet != nil { _ = try? await refresh() }
            guard snapshot.version < version else { break }
            try await Task.sleep(for: min(delay, deadline - clock.now))
            delay = min(delay * 2, .milliseconds(50))
        }
        let applied = snapshot.version
        guard applied >= version else {
            throw SegmentError(
                .unavailable,
                "min_version \(version) not reached: this node has applied version \(applied) (waited \(limit.milliseconds) ms)",
                path: "min_version", details: ["version": .int(applied), "min_version": .int(version)])
        }
    }

    /// This node's fleet figures: versions applied and in the store, changes applied,
    /// reloads, and whether the store answered recently.
    public var fleetStatus: FleetStatus? {
        guard let fleet = configuration.fleet else { return nil }
        let state = fleetState.withLock { $0 }
        let applied = snapshot.version
        let interval = Double(fleet.catchUpInterval.components.seconds) + Double(fleet.catchUpInterval.components.attoseconds) / 1e18
        let stale = state.lastReached.map { now - $0 > 3 * interval } ?? true
        return FleetStatus(
            appliedVersion: applied, storeVersion: max(state.storeVersion, applied), changesApplied: state.applied,
            reloads: state.reloads, lastReached: state.lastReached, mayBeStale: stale, clockLeader: state.clockLeader)
    }
}

/// A fleet node's figures for one book.
public struct FleetStatus: Sendable {
    public var appliedVersion: Int64
    /// The version the store had when this node last asked (at least the applied one).
    public var storeVersion: Int64
    public var changesApplied: Int
    public var reloads: Int
    public var lastReached: Double?
    /// The store has not answered for three catch-up intervals: answers may be stale.
    public var mayBeStale: Bool
    /// This node re-evaluates the book's time-dependent triggers (it held the clock lock at
    /// its last clock tick).
    public var clockLeader: Bool

    public var lag: Int64 { storeVersion - appliedVersion }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
}
