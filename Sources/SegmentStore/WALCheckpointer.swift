import Dispatch
import GRDBSQLite
import SegmentCore
import Synchronization

/// Copies committed WAL frames into the database file on its own connection and queue, so
/// the writer never pays for a checkpoint inside a commit.
///
/// SQLite's automatic checkpoint runs in the connection that commits, once the WAL holds
/// 1,000 pages: the writer stalled 12-15 ms about every sixth commit of a bulk load or of a
/// write with thousands of trigger events (a tenth of the writer's time on ingest at 1M). The
/// store turns it off on the writer and installs a WAL hook that asks this object for a
/// PASSIVE checkpoint at the same threshold; a passive checkpoint takes no lock that blocks
/// the writer or the readers, copies what no reader still needs, and lets the next write
/// restart the log once all of it is copied. Past `writerLimit` pages the writer waits for a
/// checkpoint, which bounds the log under a steady stream of writes. Durability is
/// unchanged: a commit is durable when its WAL frames are synced, before any checkpoint.
final class WALCheckpointer: @unchecked Sendable {
    /// Pages in the WAL after a commit from which a checkpoint is due (SQLite's default).
    static let threshold: Int32 = 1_000
    /// Pages from which the writer waits for a checkpoint, as SQLite's own would make it.
    /// Under a steady stream of writes the background checkpoint never finds the log wholly
    /// copied when the next write starts, and only then does SQLite restart the log: without
    /// this bound it grew past 100 MB loading 10M contacts. The checkpoint the writer waits
    /// for copies only the frames not copied yet, and the log restarts at the next write.
    static let writerLimit: Int32 = 4 * threshold

    private let path: String
    /// Opened on the first checkpoint (on `queue`): most books of a many-book server never
    /// fill 1,000 WAL pages, and an idle connection costs a few hundred KB.
    private var connection: OpaquePointer?
    private let queue = DispatchQueue(label: "segmentd.wal-checkpoint")
    private let scheduled = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)

    init(path: String) {
        self.path = path
    }

    /// The checkpoint connection, opened when first needed (on `queue` only); nil if it
    /// cannot be opened (the next checkpoint tries again; the writer's log then only grows).
    private func open() -> OpaquePointer? {
        if let connection { return connection }
        var handle: OpaquePointer?
        let code = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        guard code == SQLITE_OK, let handle, sqlite3_exec(handle, "PRAGMA synchronous = FULL", nil, nil, nil) == SQLITE_OK else {
            if let handle { sqlite3_close_v2(handle) }
            return nil
        }
        connection = handle
        return handle
    }

    /// Called by the WAL hook after each commit, on the writer, with the pages the WAL holds.
    func walHolds(pages: Int32) {
        if pages >= Self.writerLimit {
            // On the checkpoint queue, so it never races the background one for the lock.
            queue.sync { checkpoint() }
            return
        }
        guard pages >= Self.threshold, !closed.load(ordering: .relaxed),
            !scheduled.exchange(true, ordering: .acquiring)
        else { return }
        queue.async { [self] in
            scheduled.store(false, ordering: .releasing)
            checkpoint()
        }
    }

    /// Runs on `queue` only.
    private func checkpoint() {
        guard !closed.load(ordering: .relaxed), let connection = open() else { return }
        sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
    }

    /// Installs the hook on the writer connection (replacing SQLite's automatic checkpoint).
    func install(on writer: OpaquePointer) {
        sqlite3_wal_hook(writer, { context, _, _, pages in
            Unmanaged<WALCheckpointer>.fromOpaque(context!).takeUnretainedValue().walHolds(pages: pages)
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Returns once every checkpoint asked for so far has run (a barrier: it starts none).
    func drain() { queue.sync {} }

    /// Waits for a running checkpoint, then closes the connection; later requests are ignored.
    func close() {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        queue.sync {
            if let connection { sqlite3_close_v2(connection) }
            connection = nil
        }
    }

    /// Without `close()`: no checkpoint can be pending (each holds a strong reference), and
    /// this may run on the checkpoint queue itself, so it only closes the connection.
    deinit {
        if !closed.exchange(true, ordering: .relaxed), let connection { sqlite3_close_v2(connection) }
    }
}
