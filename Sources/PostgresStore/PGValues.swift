import NIOCore
import PostgresNIO
import SegmentCore

extension PostgresBindings {
    /// integer → int8, real → float8, text → text, blob → bytea, null → an untyped NULL (the
    /// server infers its type from the statement).
    mutating func append(_ value: SQLValue) {
        switch value {
        case .null: appendNull()
        case .integer(let integer): append(integer)
        case .real(let real): append(real)
        case .text(let text): append(text)
        case .blob(let bytes): append(ByteBuffer(bytes: bytes))
        }
    }
}

extension SQLValue {
    /// A result cell as a SQLite storage class. postgres-nio asks for every result column in
    /// binary format: int2/int4/int8/oid → integer, float4/float8/numeric → real,
    /// text/varchar/char/name/json/jsonb/unknown → text, bytea → blob, bool → integer 0/1,
    /// void and NULL → null. Any other type throws, naming the column and a cast that fixes it.
    init(_ cell: PostgresCell) throws {
        guard var buffer = cell.bytes else {
            self = .null
            return
        }
        guard cell.format == .binary else {
            self = .text(String(buffer: buffer))
            return
        }
        func fixed<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard buffer.readableBytes == MemoryLayout<T>.size, let value = buffer.readInteger(endianness: .big, as: T.self) else {
                throw SegmentError(.internal, "PostgreSQL column \"\(cell.columnName)\" (\(cell.dataType)) has \(buffer.readableBytes) bytes, expected \(MemoryLayout<T>.size)")
            }
            return value
        }
        switch cell.dataType {
        case .int2: self = .integer(Int64(try fixed(Int16.self)))
        case .int4: self = .integer(Int64(try fixed(Int32.self)))
        case .int8: self = .integer(try fixed(Int64.self))
        case .oid: self = .integer(Int64(try fixed(UInt32.self)))
        case .float4: self = .real(Double(Float(bitPattern: try fixed(UInt32.self))))
        case .float8: self = .real(Double(bitPattern: try fixed(UInt64.self)))
        case .numeric: self = .real(try Self.numeric(&buffer, column: cell.columnName))
        case .bool: self = .integer(try fixed(UInt8.self) == 0 ? 0 : 1)
        case .text, .varchar, .bpchar, .name, .json, .unknown: self = .text(String(buffer: buffer))
        case .jsonb:
            // Binary jsonb is a version byte (1) and then the JSON text.
            _ = buffer.readInteger(as: UInt8.self)
            self = .text(String(buffer: buffer))
        case .bytea: self = .blob(Array(buffer.readableBytesView))
        case .void: self = .null
        default:
            throw SegmentError(
                .internal,
                "PostgreSQL column \"\(cell.columnName)\" has type \(cell.dataType), which the store does not map: cast it in the SQL (::int8, ::float8, ::text or ::bytea)")
        }
    }

    /// Binary numeric: digit count, weight (of the first base-10000 digit), sign, display
    /// scale, then the base-10000 digits. Read as decimal text so `Double` rounds it once.
    private static func numeric(_ buffer: inout ByteBuffer, column: String) throws -> Double {
        guard let count = buffer.readInteger(endianness: .big, as: Int16.self),
            let weight = buffer.readInteger(endianness: .big, as: Int16.self),
            let sign = buffer.readInteger(endianness: .big, as: UInt16.self),
            buffer.readInteger(endianness: .big, as: Int16.self) != nil
        else { throw SegmentError(.internal, "PostgreSQL column \"\(column)\": truncated numeric") }
        switch sign {
        case 0xC000: return .nan
        case 0xD000: return .infinity
        case 0xF000: return -.infinity
        default: break
        }
        guard count > 0 else { return 0 }
        var digits = ""
        for _ in 0..<count {
            guard let group = buffer.readInteger(endianness: .big, as: Int16.self) else {
                throw SegmentError(.internal, "PostgreSQL column \"\(column)\": truncated numeric")
            }
            let text = String(group)
            digits += String(repeating: "0", count: 4 - text.count) + text
        }
        // value = 0.DIGITS × 10^(4 × (weight + 1))
        let text = (sign == 0x4000 ? "-" : "") + "0." + digits + "e\(4 * (Int(weight) + 1))"
        guard let value = Double(text) else { throw SegmentError(.internal, "PostgreSQL column \"\(column)\": unreadable numeric \(text)") }
        return value
    }
}

extension PostgresRow {
    var sqlValues: [SQLValue] {
        get throws { try map { try SQLValue($0) } }
    }
}
