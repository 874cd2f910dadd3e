/// A strict RFC 8259 JSON parser producing ``JSONValue``.
///
/// Strictness is deliberate: this parses every RPC line, and a lenient parser turns client
/// bugs into silent data changes. Rejected: invalid UTF-8, control characters in strings,
/// lone surrogates in `\u` escapes, `NaN`/`Infinity`, leading zeros, trailing garbage,
/// duplicate object keys, nesting deeper than `maxDepth`, and numbers beyond `Double`'s range.
/// Integers that fit in `Int64` become ``JSONValue/int(_:)``; every other number becomes
/// ``JSONValue/double(_:)``.
///
/// ```swift
/// let value = try JSONParser.parse(#"{"jsonrpc":"2.0","id":1,"method":"rpc.ping"}"#)
/// value["id"]  // .int(1)
/// ```
public enum JSONParser {
    /// The default maximum nesting depth of arrays and objects.
    public static let defaultMaxDepth = 64

    /// Parses one JSON text from raw bytes (the fast path: no copy).
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        maxDepth: Int = defaultMaxDepth
    ) throws(JSONParseError) -> JSONValue {
        var reader = JSONReader(bytes: bytes, maxDepth: maxDepth)
        return try reader.parseDocument()
    }

    /// Parses one JSON text from a collection of UTF-8 bytes (copied only if not contiguous).
    public static func parse(
        _ bytes: some Collection<UInt8>,
        maxDepth: Int = defaultMaxDepth
    ) throws(JSONParseError) -> JSONValue {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            parseResult(UnsafeRawBufferPointer(buffer), maxDepth: maxDepth)
        }
        if let result {
            return try result.get()
        }
        return try Array(bytes).withUnsafeBytes { parseResult($0, maxDepth: maxDepth) }.get()
    }

    /// Parses one JSON text from a string (its UTF-8 form).
    public static func parse(
        _ string: String,
        maxDepth: Int = defaultMaxDepth
    ) throws(JSONParseError) -> JSONValue {
        var string = string
        return try string.withUTF8 { parseResult(UnsafeRawBufferPointer($0), maxDepth: maxDepth) }.get()
    }

    private static func parseResult(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) -> Result<JSONValue, JSONParseError> {
        do throws(JSONParseError) {
            return .success(try parse(bytes, maxDepth: maxDepth))
        } catch {
            return .failure(error)
        }
    }
}
