/// SQLite-style SQL text made ready for PostgreSQL's extended protocol.
///
/// The engine and plugins write `?` placeholders; PostgreSQL wants `$1…$n`. And
/// postgres-nio sends every query as Parse/Bind/Execute, which takes one statement only, while
/// a migration's SQL is often several. So the text is split at top-level `;` and each `?` is
/// numbered within its statement, both outside string literals (`'…'`, `E'…'` with backslash
/// escapes), quoted identifiers (`"…"`), dollar quotes (`$$…$$`, `$tag$…$tag$`) and comments
/// (`-- …`, nested `/* … */`), where they are left alone.
///
/// ```swift
/// PGSQL.statements("INSERT INTO t VALUES (?, '?'); SELECT ?")
/// // [("INSERT INTO t VALUES ($1, '?')", 1), ("SELECT $1", 1)]
/// ```
public enum PGSQL {
    public struct Statement: Sendable, Equatable {
        public var sql: String
        /// How many `?` it had, so how many arguments it takes.
        public var parameterCount: Int

        public init(sql: String, parameterCount: Int) {
            self.sql = sql
            self.parameterCount = parameterCount
        }
    }

    /// The statements of `sql` in order, each rewritten; empty ones (only blanks and comments)
    /// are dropped.
    public static func statements(_ sql: String) -> [Statement] {
        let bytes = Array(sql.utf8)
        var statements: [Statement] = []
        var out: [UInt8] = []
        var count = 0
        var hasContent = false
        var i = 0

        func finish() {
            if hasContent {
                let text = String(decoding: out, as: UTF8.self)
                statements.append(Statement(sql: text.trimmingBlanks(), parameterCount: count))
            }
            out.removeAll(keepingCapacity: true)
            count = 0
            hasContent = false
        }
        /// Copies `bytes[i..<end]` and moves past it.
        func copy(to end: Int, content: Bool) {
            let end = min(end, bytes.count)
            out.append(contentsOf: bytes[i..<end])
            if content { hasContent = true }
            i = end
        }

        while i < bytes.count {
            let byte = bytes[i]
            let next: UInt8? = i + 1 < bytes.count ? bytes[i + 1] : nil
            switch byte {
            case ascii("'"):
                // E'…' (or e'…') takes backslash escapes; a plain literal only doubles quotes.
                let escapes = i > 0 && (bytes[i - 1] == ascii("E") || bytes[i - 1] == ascii("e")) && (i < 2 || !isIdentifier(bytes[i - 2]))
                copy(to: endOfQuoted(bytes, from: i, quote: ascii("'"), backslashEscapes: escapes), content: true)
            case ascii("\""):
                copy(to: endOfQuoted(bytes, from: i, quote: ascii("\""), backslashEscapes: false), content: true)
            case ascii("-") where next == ascii("-"):
                var end = i + 2
                while end < bytes.count && bytes[end] != ascii("\n") { end += 1 }
                copy(to: end, content: false)
            case ascii("/") where next == ascii("*"):
                var end = i + 2, depth = 1
                while end < bytes.count && depth > 0 {
                    if bytes[end] == ascii("/") && end + 1 < bytes.count && bytes[end + 1] == ascii("*") {
                        depth += 1
                        end += 2
                    } else if bytes[end] == ascii("*") && end + 1 < bytes.count && bytes[end + 1] == ascii("/") {
                        depth -= 1
                        end += 2
                    } else {
                        end += 1
                    }
                }
                copy(to: end, content: false)
            case ascii("$") where i == 0 || !isIdentifier(bytes[i - 1]):
                if let end = endOfDollarQuote(bytes, from: i) {
                    copy(to: end, content: true)
                } else {
                    copy(to: i + 1, content: true)
                }
            case ascii("?"):
                count += 1
                out.append(contentsOf: Array("$\(count)".utf8))
                hasContent = true
                i += 1
            case ascii(";"):
                finish()
                i += 1
            default:
                copy(to: i + 1, content: !isBlank(byte))
            }
        }
        finish()
        return statements
    }

    /// Index just past the closing quote (a doubled quote stays inside), or the end of the
    /// text when unterminated (the server then reports it).
    private static func endOfQuoted(_ bytes: [UInt8], from start: Int, quote: UInt8, backslashEscapes: Bool) -> Int {
        var i = start + 1
        while i < bytes.count {
            if backslashEscapes && bytes[i] == ascii("\\") {
                i += 2
            } else if bytes[i] == quote {
                if i + 1 < bytes.count && bytes[i + 1] == quote { i += 2 } else { return i + 1 }
            } else {
                i += 1
            }
        }
        return bytes.count
    }

    /// For `$tag$` at `start` (tag empty or an identifier not starting with a digit), the index
    /// just past the matching closing `$tag$`; nil when `start` does not open a dollar quote
    /// (`$1` is a positional parameter).
    private static func endOfDollarQuote(_ bytes: [UInt8], from start: Int) -> Int? {
        var close = start + 1
        while close < bytes.count && bytes[close] != ascii("$") {
            let byte = bytes[close]
            guard isIdentifier(byte) && byte != ascii("$") else { return nil }
            if close == start + 1 && isDigit(byte) { return nil }
            close += 1
        }
        guard close < bytes.count else { return nil }
        let tag = bytes[start...close]
        var i = close + 1
        while i + tag.count <= bytes.count {
            if bytes[i] == ascii("$") && bytes[i..<(i + tag.count)].elementsEqual(tag) { return i + tag.count }
            i += 1
        }
        return bytes.count
    }

    private static func ascii(_ character: Unicode.Scalar) -> UInt8 { UInt8(ascii: character) }
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= ascii("0") && byte <= ascii("9") }
    private static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || (0x09...0x0D).contains(byte) }
    private static func isIdentifier(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= ascii("a") && byte | 0x20 <= ascii("z")) || byte == ascii("_") || byte == ascii("$") || byte >= 0x80
    }
}

extension String {
    fileprivate func trimmingBlanks() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}
