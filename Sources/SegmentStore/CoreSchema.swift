import SegmentCore

/// The tables the core owns; providers add their own after these.
public enum CoreSchema {
    public static let migrations: [StoreMigration] = [
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
