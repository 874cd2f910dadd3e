import Foundation
import GRDB
import StreamCodec

/// The same book as a plain SQLite database with typed columns, a label table and the
/// indexes an expert would add: what a user would otherwise query by hand.
struct BaselineDatabase {
    let queue: DatabaseQueue

    init(path: String) throws {
        queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE COLLATE NOCASE, name TEXT,
                    status TEXT NOT NULL, funnel TEXT, lost INTEGER NOT NULL, city TEXT COLLATE NOCASE, plan TEXT,
                    lifetime_value REAL, orders REAL, signup_date REAL, vip INTEGER, last_open REAL, last_click REAL, last_send REAL);
                CREATE TABLE contact_label (label TEXT NOT NULL, contact_id INTEGER NOT NULL, PRIMARY KEY (label, contact_id)) WITHOUT ROWID;
                CREATE INDEX contact_label_by_contact ON contact_label(contact_id, label);
                """)
        }
    }

    func insert(_ contacts: [SyntheticContact], firstID: Int) throws {
        try queue.write { db in
            let c = try db.makeStatement(sql: "INSERT INTO contact VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
            let l = try db.makeStatement(sql: "INSERT INTO contact_label VALUES (?, ?)")
            for (offset, x) in contacts.enumerated() {
                let id = firstID + offset
                try c.execute(arguments: [
                    id, x.email, x.name, x.status, x.funnel, x.lost, x.city, x.plan, x.lifetimeValue, x.orders, x.signupDate, x.vip,
                    x.lastOpen, x.lastClick, x.lastSend,
                ])
                for label in x.labels { try l.execute(arguments: [label, id]) }
            }
        }
    }

    /// The indexes, built after the bulk load as an expert would, then ANALYZE.
    func index() throws {
        try queue.write { db in
            for column in ["status", "funnel", "city", "lifetime_value", "orders", "signup_date", "last_open", "last_click"] {
                try db.execute(sql: "CREATE INDEX contact_\(column) ON contact(\(column))")
            }
            try db.execute(sql: "ANALYZE")
        }
    }

    func count(_ segment: BenchSegment) throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: segment.sql, arguments: StatementArguments(segment.arguments)) ?? 0 }
    }

    /// Rows of the resolve query as CSV through gzip level 1; returns rows and compressed bytes.
    func csvGzip(_ segment: BenchSegment) throws -> (rows: Int, bytes: Int) {
        try queue.read { db in
            let gz = try GzipCompressor(level: 1)
            var rows = 0, bytes = 0
            var buffer: [UInt8] = []
            CSV.appendRecord(["email", "name", "status"], to: &buffer)
            let cursor = try Row.fetchCursor(db, sql: segment.sql, arguments: StatementArguments(segment.arguments))
            while let row = try cursor.next() {
                CSV.appendRecord([row[0] as String, (row[1] as String?) ?? "", row[2] as String], to: &buffer)
                rows += 1
                if buffer.count > 64 * 1024 {
                    bytes += try gz.compress(buffer).count
                    buffer.removeAll(keepingCapacity: true)
                }
            }
            bytes += try gz.compress(buffer).count + (try gz.finish()).count
            return (rows, bytes)
        }
    }
}
