import CoreMetrics
import Foundation
import Logging
import SegmentCore
import SegmentStore
import Synchronization
import WireJSON

/// The segment engine: one writer, published immutable snapshots, exact resolution.
///
/// Writes run one at a time inside a SQLite transaction; the new `Book` is published only
/// after the commit, so an answer never describes an unacknowledged state. Reads take the
/// current snapshot and work on it without locks while writes go on.
///
/// ```swift
/// var registry = DimensionRegistry()
/// registry.register(StatusDimension())
/// let engine = try Engine(configuration: .init(databasePath: "segmentd.sqlite"), registry: registry)
/// _ = try await engine.upsert(contacts: [["email": "ana@example.com"]])
/// try engine.count(filters: [], audience: .send).sendable
/// ```
public final class Engine: Sendable {
    public struct Configuration: Sendable {
        public var databasePath: String
        public var clock: any TimeSource
        public var timeZone: TimeZone
        /// The most contacts one upsert takes.
        public var maxBatch: Int
        public var lint = LintSettings()
        /// Events a subscriber reads from the log at once (its page; what it holds in memory
        /// however far behind it is).
        public var subscriberPageSize = 500
        /// Seconds an `events.subscribe` client may take nothing from its connection while an
        /// event waits to be written before its subscription ends (it resumes from its cursor).
        public var subscriberTimeoutSeconds: Double = 60
        /// Events older than this are pruned.
        public var eventRetentionSeconds: Double = 30 * 86_400
        /// At most this many events are kept.
        public var eventRetentionCount = 1_000_000
        /// Opens the database for reading only, without its lock (one server per database)
        /// and without migrations: for a process that reads a database another one serves,
        /// as the bench times counts in process on the file its server child holds. Writes fail.
        public var readOnly = false
        /// The book's name, as the `book` label of its metrics.
        public var name = "default"
        /// Where the engine records its metrics (``EngineMetrics``).
        public var metricsFactory: any MetricsFactory = MetricsSystem.factory
        /// Opens the book's store; `nil`: the SQLite file at `databasePath`.
        public var openStore: (@Sendable (_ book: String, _ providers: [any DimensionProvider]) throws -> any BookStore)?
        /// Set when the store is shared by a fleet of nodes (PostgreSQL): writes catch up
        /// first and append change records, and the node applies other nodes' changes.
        public var fleet: FleetSettings?
        /// Where the books are when they are not SQLite files of the data directory
        /// (PostgreSQL); `nil`: files.
        public var bookSpace: (any BookSpace)?

        public init(
            databasePath: String, clock: any TimeSource = SystemTime(),
            timeZone: TimeZone = TimeZone(identifier: "UTC")!, maxBatch: Int = 10_000
        ) {
            self.databasePath = databasePath
            self.clock = clock
            self.timeZone = timeZone
            self.maxBatch = maxBatch
        }
    }

    public let configuration: Configuration
    public let registry: DimensionRegistry
    public let time: ISOTime
    let store: any BookStore
    let logger: Logger
    /// Wakes subscribers when events are committed (they read the events from the log).
    let hub: EventHub
    /// The open `events.subscribe` streams, for the metrics.
    public let subscribers = SubscriberRegistry()
    let metrics: EngineMetrics
    let published: Mutex<Book>
    /// The last `residentBytes` computed, and the version it is for.
    private let residentCache = Mutex<(version: Int64, slots: Int, bytes: Int)?>(nil)
    /// The event log's extent, for retention (see ``EventLogSummary``).
    let eventLog: Mutex<EventLogSummary>
    /// A fleet node's bookkeeping: changes applied, reloads, when the store last answered.
    let fleetState = Mutex(FleetState())
    /// The loop applying other nodes' changes (fleet mode).
    private let follower = Mutex<Task<Void, Never>?>(nil)

    /// The storage schema a book has with `registry`: every migration's name, in the order
    /// they apply (the core's, then each provider's). Its count is the schema version.
    public static func schemaMigrations(registry: DimensionRegistry) -> [String] {
        PartStorage.sqliteMigrations(for: registry.providers).map(\.name)
    }

    /// Opens the database (creating and migrating it if needed) and rebuilds the book from it.
    public init(configuration: Configuration, registry: DimensionRegistry, logger: Logger = Logger(label: "segmentd.engine")) throws {
        self.configuration = configuration
        self.registry = registry
        self.time = ISOTime(timeZone: configuration.timeZone)
        self.logger = logger
        store = try configuration.openStore?(configuration.name, registry.providers) ?? Store(
            path: configuration.databasePath, migrations: PartStorage.sqliteMigrations(for: registry.providers),
            readOnly: configuration.readOnly)
        let time = self.time
        let book = try BookLoader(registry: registry, time: time).load(store)
        eventLog = Mutex(try store.readNow { try EventLogSummary($0) })
        hub = EventHub()
        metrics = EngineMetrics(book: configuration.name, fleet: configuration.fleet != nil, factory: configuration.metricsFactory)
        published = Mutex(book)
        // The book is in memory now: the connections loading it used go.
        store.releaseMemory()
        logger.info("book loaded", metadata: ["book.contacts": "\(book.contactCount)", "book.version": "\(book.version)"])
        if configuration.fleet != nil { startFollowing() }
    }

    /// The current state of the book: an immutable value, safe to keep while writes go on.
    public var snapshot: Book { published.withLock { $0 } }

    public var now: Double { configuration.clock.now() }

    var lintSettings: LintSettings { configuration.lint }

    /// Runs one write: `body` mutates a private copy of the book and writes SQL in one
    /// transaction; the contacts it touched are re-checked against the triggers and their
    /// events appended in the same transaction; the copy is published only after the commit.
    /// If `body` throws, nothing is written and nothing is published. `bumpsVersion: false` is
    /// for bookkeeping (a segment's `last_used_at`) that changes neither the Contact Book nor a
    /// definition: clients compare `version` to tell states apart.
    /// `onCommit` runs on the writer queue right after the commit, before any other write.
    func write<T: Sendable>(
        cause: String, bumpsVersion: Bool = true, onCommit: (@Sendable (T) -> Void)? = nil,
        _ body: @escaping @Sendable (inout WriteContext) throws -> T
    ) async throws -> T {
        let now = self.now
        let time = self.time
        let (result, _, _, _) = try await store.write({ [self] sql in
            var base = self.snapshot
            var caughtUp: CaughtUp?
            if self.configuration.fleet != nil, let fresh = try self.catchUp(base, sql: sql) {
                caughtUp = fresh
                base = fresh.book
            }
            var context = WriteContext(book: base, sql: sql, now: now, time: time)
            let result = try body(&context)
            try self.storeDocuments(&context)
            try self.applyRewrittenSegments(&context)
            let events = try TriggerEvaluator(cause: cause).evaluate(&context, base: base)
            if bumpsVersion {
                let version = context.book.version + 1
                // A fleet node stores the version with its change record, in one statement.
                if self.configuration.fleet == nil {
                    try sql.execute("INSERT INTO meta(key, value) VALUES ('version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [.integer(version)])
                }
                context.book.bumpVersion(to: version)
            }
            if self.configuration.fleet != nil {
                let sequence = try self.appendChange(context, base: base, events: events, sql: sql)
                context.book.setChangeSequence(sequence)
            }
            return (result, context.book, events, caughtUp)
        }, afterCommit: { [self] (output: (T, Book, [TriggerEvent], CaughtUp?)) in
            if let caughtUp = output.3 { self.adoptLog(caughtUp) }
            self.published.withLock { $0 = output.1 }
            self.eventLog.withLock { $0.appended(output.2) }
            self.metrics.appended(output.2)
            self.fleetState.withLock { $0.lastReached = self.now }
            onCommit?(output.0)
            if let newest = output.2.last?.cursor { self.hub.publish(through: newest) }
        })
        return result
    }

    /// Stores the documents and definitions the providers marked changed: the current ones of
    /// live contacts; a deleted contact's documents were deleted with it.
    func storeDocuments(_ context: inout WriteContext) throws {
        let (documents, definitions) = context.takeChanges()
        for provider in registry.providers {
            if let changed = documents[provider.name] { context.storedContacts.formUnion(changed) }
            let slots = documents[provider.name].map { $0.intersection(context.book.alive) } ?? ContactSet()
            let keys = definitions[provider.name] ?? []
            guard !slots.isEmpty || !keys.isEmpty else { continue }
            if !keys.isEmpty { context.storedDefinitions = true }
            try PartStorage.write(provider, slots: slots, definitions: keys, book: context.book, sql: context.sql)
        }
    }

    /// Writes a consistent copy of the database to `path` while the engine keeps running.
    public func backup(to path: String) throws { try store.backup(to: path) }

    /// An estimate of the memory the book holds (``Book/residentBytes``), computed once per
    /// version: the estimate walks every string column, so `books.list` and `server.stats`
    /// on a large unchanged book reuse it.
    public var residentBytes: Int {
        let book = snapshot
        if let cached = residentCache.withLock({ $0 }), cached.version == book.version, cached.slots == book.slotCount { return cached.bytes }
        let bytes = book.residentBytes
        residentCache.withLock { $0 = (book.version, book.slotCount, bytes) }
        return bytes
    }

    /// Reads and write transactions run on the database since start-up: what work on this
    /// book cost (a clock tick on a book with nothing due adds none).
    public var storeOperations: Int { store.operations }

    /// Flushes and closes the database.
    /// Applies other nodes' changes as they come (fleet mode): woken by the store's
    /// notifications, and at least every `catchUpInterval` in case one was lost.
    private func startFollowing() {
        let interval = configuration.fleet?.catchUpInterval ?? .seconds(1)
        let task = Task { [weak self] in
            // At once first: loading read the core and each dimension in transactions of their
            // own, so writes other nodes made meanwhile are applied before anything waits.
            var first = true
            var asked = ContinuousClock.now
            while !Task.isCancelled {
                guard let store = self?.store else { return }
                // This node's own writes are announced too: nothing to ask for those (but
                // the interval holds even while this node writes all the time).
                if !first, await !store.waitForChange(upTo: max(interval - (ContinuousClock.now - asked), .milliseconds(1))),
                    ContinuousClock.now - asked < interval
                {
                    continue
                }
                first = false
                asked = ContinuousClock.now
                guard !Task.isCancelled, let self else { return }
                do {
                    try await self.refresh()
                } catch {
                    // A node closing ends its store under the loop: not worth a warning.
                    guard !Task.isCancelled else { return }
                    self.logger.warning("fleet catch-up failed", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
        }
        follower.withLock { $0 = task }
    }

    public func close() throws {
        follower.withLock { $0?.cancel() }
        metrics.destroy()
        try store.close()
    }

    /// The newest cursor in the book's event log (0 when it has none).
    public var newestCursor: Int64 { eventLog.withLock { $0.newestCursor } }

    /// The size of the book's SQLite write-ahead log, in bytes (0 when there is none).
    public var walBytes: Int { store.walBytes }
}
