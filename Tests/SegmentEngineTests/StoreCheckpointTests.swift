import Foundation
import SegmentCore
import SegmentStore
import TestThreads
import Testing

/// The writer no longer checkpoints inside its commits; a background connection does. The
/// write-ahead log must still be copied back and restarted, or it would grow with every
/// write for as long as the server runs.
@Suite(.ownThreads) struct StoreCheckpointTests {
    /// A store with one table of blobs in a fresh directory; the caller removes the directory.
    static func store() throws -> (Store, path: String) {
        let directory = NSTemporaryDirectory() + "segment-checkpoint-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/c.sqlite"
        return (try Store(path: path, migrations: [StoreMigration("t.v1", sql: "CREATE TABLE chunk (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL)")]), path)
    }

    /// The size of the store's write-ahead log, 0 when there is none.
    static func walSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0
    }

    @Test func theLogIsCheckpointedAndRestartedWithoutTheWriter() async throws {
        let (store, path) = try Self.store()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let walSize = { Self.walSize(path) }
        let writes = 16, bytesPerWrite = 1_200_000  // ~300 pages each, ~19 MB in all
        for i in 0..<writes {
            _ = try await store.write({ sql in
                try sql.execute("INSERT INTO chunk(id, bytes) VALUES (?, ?)", [.integer(Int64(i)), .blob([UInt8](repeating: UInt8(i), count: bytesPerWrite))])
                return 0
            }, afterCommit: { _ in })
            // The checkpoint runs beside the writes; waiting for it (rather than sleeping a
            // while) keeps a loaded machine from turning this into a race.
            store.waitForBackgroundCheckpoints()
        }
        // The log restarts once a checkpoint has copied it all: it stays near the threshold
        // (1,000 pages, ~4 MB) plus a write or two, far below the ~19 MB written.
        #expect(walSize() < 10_000_000, "WAL is \(walSize()) bytes after \(writes * bytesPerWrite) written")
        let stored = try await store.read { sql in
            var rows: [(Int64, Int)] = []
            try sql.forEachRow("SELECT id, length(bytes) FROM chunk ORDER BY id", []) { rows.append(($0[0].int64 ?? -1, Int($0[1].int64 ?? 0))) }
            return rows.map { "\($0.0):\($0.1)" }
        }
        #expect(stored == (0..<writes).map { "\($0):\(bytesPerWrite)" })
        try store.close()
        #expect(walSize() == 0, "close truncates the log")
    }

    /// Writes back to back, with no pause for the background checkpoint: the writer checkpoints
    /// itself past 4,000 pages (~16 MB), so the log stays bounded instead of growing with every
    /// write (it passed 100 MB loading 10M contacts before the writer's bound).
    @Test func theLogStaysBoundedUnderSteadyWrites() async throws {
        let (store, path) = try Self.store()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        defer { try? store.close() }
        var largest = 0
        for i in 0..<40 {  // ~48 MB in all
            _ = try await store.write({ sql in
                try sql.execute("INSERT INTO chunk(id, bytes) VALUES (?, ?)", [.integer(Int64(i)), .blob([UInt8](repeating: 7, count: 1_200_000))])
                return 0
            }, afterCommit: { _ in })
            largest = max(largest, Self.walSize(path))
        }
        #expect(largest < 20_000_000, "the WAL reached \(largest) bytes")
    }
}
