import Foundation
import Logging
import SegmentCore
import SegmentStore
import Synchronization

/// The Contact Books one server holds, by name: one ``Engine`` (one SQLite database, one lock)
/// per book, created and dropped while the server runs.
///
/// **Layout.** Book `NAME` lives in `<data-dir>/books/NAME.sqlite` (with its `-wal`, `-shm` and
/// `.lock` files beside it). `--db FILE` makes FILE the `default` book instead of
/// `books/default.sqlite`; other books still live under the data directory.
///
/// **Loading.** The `default` book is loaded before the server listens, as a one-book server
/// always was: its lock conflict or a damaged file stops start-up. Every other book found in
/// the data directory is loaded in the background right after, a few at a time, `default`
/// first then the smallest files first. A request for a book that is not loaded yet starts its
/// load at once (ahead of the queue) and waits for it at most ``loadWait``; then it fails with
/// an `unavailable` error naming the book, and the load goes on.
///
/// **Dropping.** A drop waits for the requests running on the book (streams on it are
/// cancelled first), closes it and removes its files. While it waits the book is unknown to
/// new requests.
///
/// ```swift
/// let catalog = try BookCatalog(layout: .init(dataDirectory: "segmentd-data"), engine: config, registry: registry)
/// Task { await catalog.loadAll() }
/// let acme = try await catalog.create("acme")
/// let engine = try await catalog.engine("default")
/// ```
public final class BookCatalog: Sendable {
    /// The book of calls that name none.
    public static let defaultBook = "default"

    /// Where books live.
    public struct Layout: Sendable {
        public var dataDirectory: String
        /// A database file that is the `default` book instead of `books/default.sqlite`.
        public var defaultDatabase: String?

        public init(dataDirectory: String, defaultDatabase: String? = nil) {
            self.dataDirectory = dataDirectory
            self.defaultDatabase = defaultDatabase
        }

        public var booksDirectory: String { dataDirectory + "/books" }

        public func databasePath(of name: String) -> String {
            if name == BookCatalog.defaultBook, let defaultDatabase { return defaultDatabase }
            return booksDirectory + "/" + name + ".sqlite"
        }
    }

    /// One book as `books.list` and `server.stats` show it.
    public struct Status: Sendable {
        public var name: String
        /// `loading`, `ready` or `failed`.
        public var state: String
        public var engine: Engine?
        public var error: String?
        public var path: String

        public init(name: String, state: String, engine: Engine?, error: String?, path: String) {
            self.name = name
            self.state = state
            self.engine = engine
            self.error = error
            self.path = path
        }
    }

    public let layout: Layout
    /// How long a request waits for its book to finish loading.
    public let loadWait: Duration
    let template: Engine.Configuration
    public let registry: DimensionRegistry
    let logger: Logger
    let loadExecutor: (any TaskExecutor)?
    let entries: Mutex<[String: BookEntry]>
    /// Held while the catalog is open: one server per data directory (a second one would
    /// see the first one's books as failed to load, and could drop their files).
    private let directoryLock: DatabaseLock

    /// Creates the data directory if needed, finds its books and loads the `default` book
    /// (creating it if it does not exist). Other books are loaded by ``loadAll(parallel:)``
    /// or by their first request. `engine.databasePath` is ignored: each book has its own.
    public init(
        layout: Layout, engine template: Engine.Configuration, registry: DimensionRegistry,
        loadWait: Duration = .seconds(30), loadExecutor: (any TaskExecutor)? = nil, logger: Logger = Logger(label: "segmentd.books")
    ) throws {
        self.layout = layout
        self.template = template
        self.registry = registry
        self.loadWait = loadWait
        self.loadExecutor = loadExecutor
        self.logger = logger
        do {
            try FileManager.default.createDirectory(atPath: layout.booksDirectory, withIntermediateDirectories: true)
        } catch {
            throw SegmentError(.internal, "cannot create the data directory \(layout.booksDirectory): \(error.localizedDescription)")
        }
        let lock = try DatabaseLock(
            lockFile: layout.dataDirectory + "/segmentd.lock", subject: "data directory \(layout.dataDirectory)",
            advice: "one server per data directory: stop that one, or give this one another --data-dir")
        var found: [String: BookEntry] = [:]
        // `--db FILE` is the default book, even when FILE lies in books/ under another name:
        // it is never a second book as well.
        let defaultFile = layout.defaultDatabase.flatMap(Self.realPath)
        let names: [String]
        do {
            names = try template.bookSpace?.names() ?? Self.scan(layout.booksDirectory)
        } catch {
            lock.release()
            throw error
        }
        for name in names where !(name == Self.defaultBook && layout.defaultDatabase != nil) {
            let path = layout.databasePath(of: name)
            if let defaultFile, Self.realPath(path) == defaultFile { continue }
            found[name] = BookEntry(name: name, path: path)
        }
        let defaultEntry = BookEntry(name: Self.defaultBook, path: layout.databasePath(of: Self.defaultBook))
        do {
            defaultEntry.finishLoading(.success(try Self.open(defaultEntry, template: template, registry: registry, logger: logger)))
        } catch {
            lock.release()
            throw error
        }
        directoryLock = lock
        found[Self.defaultBook] = defaultEntry
        entries = Mutex(found)
        if found.count > 1 { logger.info("books found", metadata: ["books": "\(found.count)", "books.dir": "\(layout.booksDirectory)"]) }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The book names in the data directory (files `NAME.sqlite` with a valid name).
    static func scan(_ directory: String) throws -> [String] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw SegmentError(.internal, "cannot read the data directory \(directory): \(error.localizedDescription)")
        }
        return files.compactMap { file in
            guard file.hasSuffix(".sqlite") else { return nil }
            let name = String(file.dropLast(".sqlite".count))
            return (try? validate(name: name)) != nil ? name : nil
        }
    }

    static func open(_ entry: BookEntry, template: Engine.Configuration, registry: DimensionRegistry, logger: Logger) throws -> Engine {
        var configuration = template
        configuration.databasePath = entry.path
        configuration.name = entry.name
        var bookLogger = logger
        bookLogger[metadataKey: "book"] = "\(entry.name)"
        return try Engine(configuration: configuration, registry: registry, logger: bookLogger)
    }

    // MARK: Names

    /// Book names: 1–64 characters of `a-z`, `0-9`, `_` and `-` (they name files).
    public static func validate(name: String, path: String = "name") throws(SegmentError) {
        let valid = (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard valid else {
            throw SegmentError.invalidParams(
                path: path, "book names are 1 to 64 characters of a-z, 0-9, _ and -; got \"\(name)\"")
        }
    }

    /// The `default` book's engine (loaded by `init`, so it needs no wait).
    public func defaultEngine() throws(SegmentError) -> Engine {
        guard let engine = entries.withLock({ $0[Self.defaultBook] })?.readyEngine else { throw Self.noSuchBook(Self.defaultBook) }
        return engine
    }

    /// Every book's name, sorted.
    public var names: [String] { entries.withLock { $0.keys.sorted() } }

    /// Whether a book of that name exists (loaded or not).
    public func contains(_ name: String) -> Bool { entries.withLock { $0[name] != nil } }

    // MARK: Reaching a book

    /// The engine of book `name`, waiting at most ``loadWait`` for it to load.
    ///
    /// Throws `notFound` for a book that does not exist (or is being dropped), `unavailable`
    /// while it is still loading after the wait, and `internal` if its load failed.
    public func engine(_ name: String) async throws(SegmentError) -> Engine {
        try await loaded(entry(name))
    }

    func entry(_ name: String) throws(SegmentError) -> BookEntry {
        if let entry = entries.withLock({ $0[name] }) { return entry }
        // A fleet's book another node created since this one started: open it here too.
        guard let space = template.bookSpace, (try? Self.validate(name: name)) != nil, (try? space.contains(name)) == true else {
            throw Self.noSuchBook(name)
        }
        let found = BookEntry(name: name, path: layout.databasePath(of: name))
        return entries.withLock { entries in
            if let existing = entries[name] { return existing }
            entries[name] = found
            return found
        }
    }

    /// `entry`'s engine once loaded (starting its load if needed), waiting at most ``loadWait``.
    func loaded(_ entry: BookEntry) async throws(SegmentError) -> Engine {
        if let engine = entry.readyEngine { return engine }
        startLoad(entry)
        return try await entry.waitReady(for: loadWait)
    }

    /// Runs `body` with the engine of book `name`, holding the book: a drop waits for it.
    /// With `cancelOnDrop`, a drop cancels `body` instead (long streams).
    public func withBook<T: Sendable>(
        _ name: String, cancelOnDrop: Bool = false, _ body: @escaping @Sendable (Engine) async throws -> T
    ) async throws -> T {
        // One entry throughout: a drop and re-create of the name meanwhile is another entry,
        // and this request then finds its book gone rather than running on a closed engine.
        let entry = try entry(name)
        _ = try await loaded(entry)
        guard let engine = entry.acquire() else { throw Self.noSuchBook(name) }
        defer { entry.release() }
        guard cancelOnDrop else { return try await body(engine) }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body(engine) }
            group.addTask {
                await entry.waitDropping()
                return nil
            }
            defer { group.cancelAll() }
            while let outcome = try await group.next() {
                if let value = outcome { return value }
                group.cancelAll()  // dropping (or the request cancelled): the stream ends with its final reply
            }
            throw CancellationError()
        }
    }

    public static func noSuchBook(_ name: String) -> SegmentError {
        SegmentError(.notFound, "no book named \"\(name)\" (books.create makes one; books.list shows them)")
    }

    // MARK: Loading

    /// Loads every book not yet loaded, `parallel` at a time: `default` first, then the
    /// smallest database files first (so most books are ready soonest). Returns when all are
    /// loaded or failed, or when the calling task is cancelled.
    public func loadAll(parallel: Int = 2) async {
        let queue = entries.withLock { $0.values.filter { !$0.isSettled } }
            .map { entry in (entry, Self.fileSize(entry.path)) }
            .sorted { ($0.1, $0.0.name) < ($1.1, $1.0.name) }
            .map(\.0)
        guard !queue.isEmpty else { return }
        let next = Ticket()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<max(1, parallel) {
                group.addTask {
                    while !Task.isCancelled {
                        let index = next.take()
                        guard index < queue.count else { return }
                        let entry = queue[index]
                        self.startLoad(entry)
                        _ = try? await entry.waitReady(for: .seconds(86_400 * 365))
                    }
                }
            }
        }
        logger.info("books loaded", metadata: ["books": "\(queue.count + 1)"])
    }

    static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// Starts loading `entry` unless it is loading or loaded.
    private func startLoad(_ entry: BookEntry) {
        guard entry.claimLoad() else { return }
        let template = self.template, registry = self.registry, logger = self.logger
        let work: @Sendable () -> Void = {
            let started = ContinuousClock.now
            let outcome = Result { try Self.open(entry, template: template, registry: registry, logger: logger) }
            if case .failure(let error) = outcome {
                logger.error("book failed to load", metadata: ["book": "\(entry.name)", "error": "\(error)"])
            } else {
                logger.debug("book loaded", metadata: ["book": "\(entry.name)", "seconds": "\((ContinuousClock.now - started) / .milliseconds(1) / 1000)"])
            }
            entry.finishLoading(outcome)
        }
        // Loading reads the whole database and computes: it runs on threads of its own, never
        // on the cooperative pool the server's event loops need.
        if let loadExecutor {
            Task(executorPreference: loadExecutor) { work() }
        } else {
            Thread.detachNewThread { work() }
        }
    }

    // MARK: Looking at books

    /// Every book with its state, by name.
    public func statuses() -> [Status] {
        entries.withLock { $0.values.map(\.status) }.sorted { $0.name < $1.name }
    }

    /// The engines of the books loaded now, by name.
    public var loaded: [(name: String, engine: Engine)] {
        entries.withLock { $0.values.compactMap { entry in entry.readyEngine.map { (entry.name, $0) } } }.sorted { $0.name < $1.name }
    }

    /// Waits for loads in progress, then closes every book.
    public func close() async throws {
        let all = entries.withLock { Array($0.values) }
        var firstError: (any Error)?
        for entry in all {
            if entry.isLoading { _ = try? await entry.waitReady(for: .seconds(600)) }
            guard let engine = entry.readyEngine else { continue }
            do { try engine.close() } catch { firstError = firstError ?? error }
        }
        directoryLock.release()
        if let firstError { throw firstError }
    }
}

/// Hands out 0, 1, 2, … to concurrent takers.
private final class Ticket: Sendable {
    private let next = Atomic<Int>(0)
    func take() -> Int { next.add(1, ordering: .relaxed).oldValue }
}
