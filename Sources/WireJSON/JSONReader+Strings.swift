/// String parsing for ``JSONReader``: escapes, surrogate pairs and UTF-8 validation.
extension JSONReader {
    /// Parses a string starting at the opening quote at `pos`.
    mutating func parseString() throws(JSONParseError) -> String {
        let quote = pos
        pos &+= 1
        let start = pos
        // Fast path: no escapes, so the bytes are the string (validated as we scan).
        while pos < bytes.count {
            let byte = bytes[pos]
            if byte == UInt8(ascii: "\"") {
                let string = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
                pos &+= 1
                return string
            }
            if byte == UInt8(ascii: "\\") { return try parseEscapedString(quote: quote, start: start) }
            if byte < 0x20 { throw controlCharacter(at: pos) }
            if byte >= 0x80 { try skipUTF8Sequence() } else { pos &+= 1 }
        }
        throw JSONParseError("unterminated string", offset: quote)
    }

    private mutating func parseEscapedString(quote: Int, start: Int) throws(JSONParseError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(pos &- start &+ 16)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while pos < bytes.count {
            let byte = bytes[pos]
            switch byte {
            case UInt8(ascii: "\""):
                pos &+= 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            case 0..<0x20:
                throw controlCharacter(at: pos)
            case 0x80...:
                let sequenceStart = pos
                try skipUTF8Sequence()
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[sequenceStart..<pos]))
            default:
                let runStart = pos
                while pos < bytes.count {
                    let c = bytes[pos]
                    if c < 0x20 || c >= 0x80 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { break }
                    pos &+= 1
                }
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<pos]))
            }
        }
        throw JSONParseError("unterminated string", offset: quote)
    }

    private mutating func parseEscape(into out: inout [UInt8]) throws(JSONParseError) {
        let escapeStart = pos
        pos &+= 1
        guard pos < bytes.count else { throw JSONParseError("unterminated string", offset: escapeStart) }
        let code = bytes[pos]
        pos &+= 1
        switch code {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(code)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try readHex4()
            if scalar >= 0xD800, scalar <= 0xDBFF {
                guard pos &+ 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos &+ 1] == UInt8(ascii: "u") else {
                    throw JSONParseError("lone surrogate in \\u escape", offset: escapeStart)
                }
                pos &+= 2
                let low = try readHex4()
                guard low >= 0xDC00, low <= 0xDFFF else {
                    throw JSONParseError("lone surrogate in \\u escape", offset: escapeStart)
                }
                scalar = 0x10000 &+ ((scalar &- 0xD800) << 10) &+ (low &- 0xDC00)
            } else if scalar >= 0xDC00, scalar <= 0xDFFF {
                throw JSONParseError("lone surrogate in \\u escape", offset: escapeStart)
            }
            Self.appendUTF8(scalar, to: &out)
        default:
            throw JSONParseError("invalid escape sequence", offset: escapeStart)
        }
    }

    private mutating func readHex4() throws(JSONParseError) -> UInt32 {
        guard pos &+ 4 <= bytes.count else { throw JSONParseError("invalid \\u escape", offset: pos) }
        var value: UInt32 = 0
        for i in 0..<4 {
            let c = bytes[pos &+ i]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c &- UInt8(ascii: "A") &+ 10
            default: throw JSONParseError("invalid \\u escape", offset: pos &+ i)
            }
            value = value << 4 | UInt32(digit)
        }
        pos &+= 4
        return value
    }

    private static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `pos` (RFC 3629: no overlongs, no
    /// surrogates, nothing above U+10FFFF) and moves past it.
    private mutating func skipUTF8Sequence() throws(JSONParseError) {
        let lead = bytes[pos]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: throw JSONParseError("invalid UTF-8", offset: pos)
        }
        guard pos &+ length <= bytes.count, secondRange.contains(bytes[pos &+ 1]) else {
            throw JSONParseError("invalid UTF-8", offset: pos)
        }
        for i in 2..<length where bytes[pos &+ i] & 0xC0 != 0x80 {
            throw JSONParseError("invalid UTF-8", offset: pos)
        }
        pos &+= length
    }

    private func controlCharacter(at index: Int) -> JSONParseError {
        JSONParseError("unescaped control character in string", offset: index)
    }
}
