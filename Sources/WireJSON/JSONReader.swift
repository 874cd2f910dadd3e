/// The parser's cursor over one input buffer: values, containers and numbers.
///
/// Works on raw bytes with an integer position (no `Character` iteration); strings live in
/// `JSONReader+Strings.swift`. Recursion depth is bounded by `maxDepth`.
struct JSONReader {
    let bytes: UnsafeRawBufferPointer
    let maxDepth: Int
    var pos = 0
    var depth = 0

    init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// Parses exactly one value surrounded by optional whitespace.
    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard pos < bytes.count else {
            throw JSONParseError(bytes.isEmpty ? "empty input" : "unexpected end of input", offset: pos)
        }
        let value = try parseValue()
        skipWhitespace()
        if pos < bytes.count {
            throw JSONParseError("unexpected trailing characters", offset: pos)
        }
        return value
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x0A, 0x0D, 0x09: pos &+= 1
            default: return
            }
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard pos < bytes.count else { throw JSONParseError("unexpected end of input", offset: pos) }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw unexpectedByte(at: pos)
        }
    }

    private mutating func enterContainer() throws(JSONParseError) {
        depth &+= 1
        if depth > maxDepth {
            throw JSONParseError("nesting deeper than \(maxDepth) levels", offset: pos)
        }
        pos &+= 1
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        let start = pos
        try enterContainer()
        var object: [String: JSONValue] = [:]
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
            pos &+= 1
            depth &-= 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard pos < bytes.count else { throw JSONParseError("unterminated object", offset: start) }
            guard bytes[pos] == UInt8(ascii: "\"") else {
                throw JSONParseError("expected a string key in object", offset: pos)
            }
            let keyOffset = pos
            let key = try parseString()
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else {
                throw JSONParseError("expected ':' after object key", offset: pos)
            }
            pos &+= 1
            skipWhitespace()
            let value = try parseValue()
            if object.updateValue(value, forKey: key) != nil {
                throw JSONParseError("duplicate key \"\(Self.abbreviated(key))\"", offset: keyOffset)
            }
            skipWhitespace()
            guard pos < bytes.count else { throw JSONParseError("unterminated object", offset: start) }
            let separator = bytes[pos]
            pos &+= 1
            if separator == UInt8(ascii: ",") { continue }
            if separator == UInt8(ascii: "}") { break }
            throw JSONParseError("expected ',' or '}' in object", offset: pos &- 1)
        }
        depth &-= 1
        return .object(object)
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        let start = pos
        try enterContainer()
        var array: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
            pos &+= 1
            depth &-= 1
            return .array(array)
        }
        while true {
            skipWhitespace()
            array.append(try parseValue())
            skipWhitespace()
            guard pos < bytes.count else { throw JSONParseError("unterminated array", offset: start) }
            let separator = bytes[pos]
            pos &+= 1
            if separator == UInt8(ascii: ",") { continue }
            if separator == UInt8(ascii: "]") { break }
            throw JSONParseError("expected ',' or ']' in array", offset: pos &- 1)
        }
        depth &-= 1
        return .array(array)
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let length = literal.utf8CodeUnitCount
        guard pos &+ length <= bytes.count else { throw JSONParseError("invalid literal", offset: pos) }
        let expected = literal.utf8Start
        for i in 0..<length where bytes[pos &+ i] != expected[i] {
            throw JSONParseError("invalid literal", offset: pos)
        }
        pos &+= length
    }

    @inline(__always)
    private func isDigit(_ index: Int) -> Bool {
        index < bytes.count && bytes[index] &- UInt8(ascii: "0") < 10
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = pos
        let negative = bytes[pos] == UInt8(ascii: "-")
        if negative { pos &+= 1 }
        guard isDigit(pos) else {
            if hasPrefix("Infinity", at: pos) {
                throw JSONParseError("NaN and Infinity are not valid JSON numbers", offset: start)
            }
            throw JSONParseError("expected a digit", offset: pos)
        }
        var magnitude: UInt64 = 0
        var overflow = false
        if bytes[pos] == UInt8(ascii: "0") {
            pos &+= 1
            if isDigit(pos) { throw JSONParseError("leading zeros are not allowed", offset: start) }
        } else {
            while isDigit(pos) {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[pos] &- UInt8(ascii: "0")))
                magnitude = sum
                overflow = overflow || o1 || o2
                pos &+= 1
            }
        }
        var isInteger = true
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos &+= 1
            guard isDigit(pos) else { throw JSONParseError("expected a digit after '.'", offset: pos) }
            while isDigit(pos) { pos &+= 1 }
        }
        if pos < bytes.count, bytes[pos] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            pos &+= 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos &+= 1 }
            guard isDigit(pos) else { throw JSONParseError("expected a digit in exponent", offset: pos) }
            while isDigit(pos) { pos &+= 1 }
        }
        if isInteger, !overflow {
            if !negative, magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
            if negative, magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
            if negative, magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else {
            throw JSONParseError("number out of range", offset: start)
        }
        return .double(double)
    }

    private func hasPrefix(_ literal: StaticString, at index: Int) -> Bool {
        let length = literal.utf8CodeUnitCount
        guard index &+ length <= bytes.count else { return false }
        for i in 0..<length where bytes[index &+ i] != literal.utf8Start[i] { return false }
        return true
    }

    func unexpectedByte(at index: Int) -> JSONParseError {
        let byte = bytes[index]
        if hasPrefix("NaN", at: index) || hasPrefix("Infinity", at: index) {
            return JSONParseError("NaN and Infinity are not valid JSON numbers", offset: index)
        }
        if byte >= 0x21, byte < 0x7F {
            return JSONParseError("unexpected character '\(Character(Unicode.Scalar(byte)))'", offset: index)
        }
        let hex = String(byte, radix: 16, uppercase: true)
        return JSONParseError("unexpected byte 0x\(byte < 16 ? "0" : "")\(hex)", offset: index)
    }

    static func abbreviated(_ text: String) -> String {
        text.unicodeScalars.count <= 64 ? text : String(String.UnicodeScalarView(text.unicodeScalars.prefix(64))) + "…"
    }
}
