import SegmentCore
import SegmentStore

/// The first column of every row `query` returns, read from the SQLite file at `path` on a
/// connection of its own (what the engine persisted, not what its book answers).
func storedColumn(at path: String, _ query: String, _ arguments: [SQLValue] = []) throws -> [SQLValue] {
    try Store.inspect(path: path) { sql in
        var values: [SQLValue] = []
        try sql.forEachRow(query, arguments) { values.append($0[0]) }
        return values
    }
}
