import SegmentCore

/// The tables the core owns; providers add their own after these.
public enum CoreSchema {
    public static var migrations: [StoreMigration] { base + [triggerMigration, baselineChunksMigration, eventTimeIndexMigration, baselineByChunkMigration] }

    static let base: [StoreMigration] = [
        StoreMigration("core.v1", sql: """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value);
            -- AUTOINCREMENT: a deleted contact's id (its slot) is never handed to another contact,
            -- so per-slot state such as trigger baselines can never be confused.
            CREATE TABLE contact (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL, email_key TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
            CREATE TABLE suppression (email_key TEXT PRIMARY KEY, email TEXT NOT NULL, reason TEXT, added_at REAL NOT NULL);
            CREATE TABLE segment (
                id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE,
                description TEXT NOT NULL DEFAULT '', filters TEXT NOT NULL, review_needed INTEGER NOT NULL,
                created_at REAL NOT NULL, updated_at REAL NOT NULL, last_used_at REAL);
            """)
    ]
}

extension CoreSchema {
    /// Triggers, their persisted membership baselines and the durable event log.
    static let triggerMigration = StoreMigration("triggers.v1", sql: """
        CREATE TABLE trigger (id INTEGER PRIMARY KEY AUTOINCREMENT, segment_id INTEGER NOT NULL, on_enter INTEGER NOT NULL,
            on_exit INTEGER NOT NULL, created_at REAL NOT NULL);
        CREATE TABLE trigger_member (trigger_id INTEGER NOT NULL, contact_id INTEGER NOT NULL, PRIMARY KEY (trigger_id, contact_id)) WITHOUT ROWID;
        CREATE TABLE event (cursor INTEGER PRIMARY KEY AUTOINCREMENT, trigger_id INTEGER NOT NULL, segment_id INTEGER NOT NULL,
            email TEXT NOT NULL, type TEXT NOT NULL, at REAL NOT NULL, cause TEXT NOT NULL);
        CREATE INDEX event_by_at ON event(at);
        """)
}

extension CoreSchema {
    /// Trigger baselines as bitmap chunks (4,096 slots, 512 bytes each) instead of one row per
    /// member: a write rewrites the chunks its transitions fall in, creating a trigger writes
    /// a few hundred chunks instead of one row per matching contact.
    static let baselineChunksMigration = StoreMigration("triggers.v2", sql: """
        CREATE TABLE trigger_baseline (trigger_id INTEGER NOT NULL, chunk INTEGER NOT NULL, bits BLOB NOT NULL,
            PRIMARY KEY (trigger_id, chunk)) WITHOUT ROWID;
        """, convert: { sql in
            var members: [Int64: ContactSet] = [:]
            try sql.forEachRow("SELECT trigger_id, contact_id FROM trigger_member", []) { row in
                guard let id = row[0].int64, let slot = row[1].int64 else { return }
                members[id, default: ContactSet()].insert(Int(slot))
            }
            for (id, set) in members {
                for chunk in set.nonEmptyChunks { try saveBaselineChunk(chunk, of: set, trigger: id, sql: sql) }
            }
            try sql.execute("DROP TABLE trigger_member", [])
        })

    /// The event log loses its index on `at`: keeping it cost a second B-tree insert per event
    /// (a fifth of a triggered write), and retention needs no index, since events are appended
    /// in time order and those past the horizon are a prefix of the log (see
    /// `Engine.pruneThrough`).
    static let eventTimeIndexMigration = StoreMigration("events.v2", sql: "DROP INDEX IF EXISTS event_by_at;")

    /// Baseline rows keyed by chunk first: a write's transitions fall in the chunks of the
    /// contacts it touched, so the rows it rewrites for all triggers now share a few pages
    /// instead of taking one page per trigger (a triggered batch of 1,000 rewrote 100-200
    /// pages of baselines; its WAL and checkpoints were a large part of its cost). Rows are
    /// deleted by key (`deleteBaseline`), never by scanning for a trigger's id.
    static let baselineByChunkMigration = StoreMigration("triggers.v3", sql: """
        CREATE TABLE trigger_baseline_by_chunk (chunk INTEGER NOT NULL, trigger_id INTEGER NOT NULL, bits BLOB NOT NULL,
            PRIMARY KEY (chunk, trigger_id)) WITHOUT ROWID;
        INSERT INTO trigger_baseline_by_chunk(chunk, trigger_id, bits) SELECT chunk, trigger_id, bits FROM trigger_baseline;
        DROP TABLE trigger_baseline;
        ALTER TABLE trigger_baseline_by_chunk RENAME TO trigger_baseline;
        """)

    /// Persists trigger `id`'s whole baseline `members` over the rows of `previous` (one per
    /// non-empty chunk of it): chunks that emptied lose their row.
    public static func saveBaseline(_ members: ContactSet, replacing previous: ContactSet, trigger id: Int64, sql: any SQLExecutor) throws {
        for chunk in Set(previous.nonEmptyChunks).union(members.nonEmptyChunks).sorted() {
            try saveBaselineChunk(chunk, of: members, trigger: id, sql: sql)
        }
    }

    /// Deletes trigger `id`'s baseline rows, one per non-empty chunk of `members`.
    public static func deleteBaseline(_ members: ContactSet, trigger id: Int64, sql: any SQLExecutor) throws {
        for chunk in members.nonEmptyChunks { try saveBaselineChunk(chunk, of: ContactSet(), trigger: id, sql: sql) }
    }

    /// Persists one 4,096-slot chunk of trigger `id`'s baseline `members` (an empty chunk has
    /// no row).
    public static func saveBaselineChunk(_ chunk: Int, of members: ContactSet, trigger id: Int64, sql: any SQLExecutor) throws {
        if let bits = members.chunkBytes(chunk) {
            try sql.execute("INSERT INTO trigger_baseline(trigger_id, chunk, bits) VALUES (?, ?, ?) ON CONFLICT (chunk, trigger_id) DO UPDATE SET bits = excluded.bits",
                            [.integer(id), .integer(Int64(chunk)), .blob(bits)])
        } else {
            try sql.execute("DELETE FROM trigger_baseline WHERE chunk = ? AND trigger_id = ?", [.integer(Int64(chunk)), .integer(id)])
        }
    }
}
