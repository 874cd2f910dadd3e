/// RFC 4180 CSV: CRLF line ends; a field is quoted when it holds a comma, a quote, CR or LF
/// (or starts or ends with a space), with quotes doubled.
public enum CSV {
    /// Appends one record to `out`.
    public static func appendRecord(_ fields: [String], to out: inout [UInt8]) {
        for (i, field) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendField(field, to: &out)
        }
        out.append(13)
        out.append(10)
    }

    static func appendField(_ field: String, to out: inout [UInt8]) {
        let utf8 = field.utf8
        let needsQuotes = utf8.contains { $0 == 44 || $0 == 34 || $0 == 13 || $0 == 10 } || utf8.first == 32 || utf8.last == 32
        guard needsQuotes else {
            out.append(contentsOf: utf8)
            return
        }
        out.append(34)
        for b in utf8 {
            if b == 34 { out.append(34) }
            out.append(b)
        }
        out.append(34)
    }

    /// An incremental RFC 4180 parser: feed bytes, take complete records with the line each
    /// started on (quoted fields may span lines). Also accepts bare LF line ends.
    public struct Reader {
        private var field: [UInt8] = []
        private var record: [String] = []
        private var inQuotes = false
        private var quotePending = false
        private var fieldStarted = false
        private var line = 1
        private var recordLine = 1

        public init() {}

        /// Parses `bytes`, returning the records completed by them.
        public mutating func feed(_ bytes: some Sequence<UInt8>) -> [(line: Int, fields: [String])] {
            var done: [(Int, [String])] = []
            for b in bytes {
                if inQuotes {
                    if quotePending {
                        quotePending = false
                        if b == 34 { field.append(34); continue }
                        inQuotes = false  // the quote closed the field; fall through
                    } else if b == 34 {
                        quotePending = true
                        continue
                    } else {
                        if b == 10 { line += 1 }
                        field.append(b)
                        continue
                    }
                }
                switch b {
                case 34 where !fieldStarted:
                    inQuotes = true
                    fieldStarted = true
                case 44:
                    endField()
                case 13:
                    continue
                case 10:
                    endField()
                    if !(record.count == 1 && record[0].isEmpty) { done.append((recordLine, record)) }
                    record = []
                    line += 1
                    recordLine = line
                default:
                    field.append(b)
                    fieldStarted = true
                }
            }
            return done
        }

        /// The last record if the input did not end with a line break.
        public mutating func finish() -> [(line: Int, fields: [String])] {
            if quotePending { quotePending = false; inQuotes = false }
            guard fieldStarted || !record.isEmpty || !field.isEmpty else { return [] }
            endField()
            defer { record = [] }
            return [(recordLine, record)]
        }

        /// Whether the input so far ended inside a quoted field (an unterminated quote).
        public var isInsideQuotes: Bool { inQuotes && !quotePending }

        private mutating func endField() {
            record.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            fieldStarted = false
        }
    }
}
