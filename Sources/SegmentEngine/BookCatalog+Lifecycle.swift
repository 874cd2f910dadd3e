import Foundation
import Logging
import SegmentCore
import SegmentStore
import Synchronization

extension BookCatalog {
    // MARK: Creating and dropping

    /// Creates book `name` (an empty database) and returns its engine.
    /// Throws `invalidParams` for a bad name and `conflict` if it exists.
    public func create(_ name: String) async throws -> Engine {
        try Self.validate(name: name)
        let entry = BookEntry(name: name, path: layout.databasePath(of: name))
        _ = entry.claimLoad()
        let existing = entries.withLock { entries -> BookEntry? in
            if let existing = entries[name] { return existing }
            entries[name] = entry
            return nil
        }
        if let existing {
            throw SegmentError(.conflict, existing.isDropping ? "book \"\(name)\" is being dropped; try again" : "book \"\(name)\" already exists")
        }
        if let space = template.bookSpace {
            if (try? space.contains(name)) == true {
                entry.finishLoading(.failure(SegmentError(.conflict, "exists")))
                entries.withLock { $0[name] = nil }
                throw SegmentError(.conflict, "book \"\(name)\" already exists")
            }
        } else if FileManager.default.fileExists(atPath: entry.path) {
            // Not found by the scan at start (created since by someone else?): never adopt it silently.
            entry.finishLoading(.failure(SegmentError(.conflict, "exists")))
            entries.withLock { $0[name] = nil }
            throw SegmentError(.conflict, "book \"\(name)\": \(entry.path) already exists but was not a book at start-up; move it away or restart")
        }
        // A log or index left without its database (a drop cut short) belongs to nothing:
        // SQLite must not replay it into the new database.
        for file in Self.files(of: entry.path) where file != entry.path { unlink(file) }
        let template = self.template, registry = self.registry, logger = self.logger
        let outcome = await Self.run(on: loadExecutor) { Result { try Self.open(entry, template: template, registry: registry, logger: logger) } }
        entry.finishLoading(outcome)
        switch outcome {
        case .success(let engine):
            logger.info("book created", metadata: ["book": "\(name)"])
            return engine
        case .failure(let error):
            for file in Self.files(of: entry.path) { unlink(file) }
            entries.withLock { $0[name] = nil }
            throw error
        }
    }

    /// Drops book `name`: waits (at most `wait`) for the requests holding it, closes it and
    /// removes its database files. Throws `notFound`, `invalidParams` for `default`, and
    /// `conflict` if requests still hold it after `wait` (the book then stays).
    public func drop(_ name: String, wait: Duration = .seconds(30)) async throws {
        try Self.validate(name: name)
        guard name != Self.defaultBook else {
            throw SegmentError.invalidParams(path: "name", "the default book cannot be dropped: it is where calls that name no book go")
        }
        let entry = try entry(name)
        // A book still loading is dropped once loaded (its files are open until then).
        let engine: Engine?
        switch await outcome(of: entry) {
        case .success(let loaded): engine = loaded
        case .failure(let error):
            // Failed to load: nothing is open, only files to remove, unless another process
            // holds them (a conflict): those are never deleted from here.
            guard error.kind == .internal else { throw error }
            engine = nil
        }
        guard entry.beginDrop() else { throw Self.noSuchBook(name) }
        switch await entry.waitForNoLeases(within: wait) {
        case .released: break
        case .timedOut(let holders):
            entry.cancelDrop()
            throw SegmentError(.conflict, "book \"\(name)\" is still in use by \(holders) request(s); try again")
        case .cancelled:
            entry.cancelDrop()
            throw CancellationError()
        }
        if let engine {
            do {
                try engine.close()
            } catch {
                logger.error("closing a dropped book failed", metadata: ["book": "\(name)", "error": "\(error)"])
            }
        }
        // The log and index first, the database last: a drop cut short leaves a whole book.
        // The entry stays (dropping) until the files are gone, so the name cannot be
        // created again over them meanwhile.
        if let space = template.bookSpace {
            do {
                try space.drop(name)
            } catch {
                entry.cancelDrop()
                throw error
            }
        } else {
            for file in Self.files(of: entry.path) { unlink(file) }
        }
        entries.withLock { $0[name] = nil }
        logger.info("book dropped", metadata: ["book": "\(name)"])
    }

    private func outcome(of entry: BookEntry) async -> Result<Engine, SegmentError> {
        do {
            return .success(try await loaded(entry))
        } catch {
            return .failure(error)
        }
    }

    /// A database file and the files SQLite and the lock keep beside it: the log, index and
    /// journal first, then the database, then its lock.
    static func files(of path: String) -> [String] { ["-wal", "-shm", "-journal", "", ".lock"].map { path + $0 } }

    static func run<T: Sendable>(on executor: (any TaskExecutor)?, _ work: @escaping @Sendable () -> T) async -> T {
        if let executor {
            return await Task(executorPreference: executor) { work() }.value
        }
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: work()) }
        }
    }
}
