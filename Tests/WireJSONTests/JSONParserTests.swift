import TestThreads
import Testing
import WireJSON

/// Accepted documents and the values they produce.
@Suite(.ownThreads) struct JSONParserAcceptanceTests {
    @Test func scalars() throws {
        #expect(try JSONParser.parse("null") == .null)
        #expect(try JSONParser.parse("true") == .bool(true))
        #expect(try JSONParser.parse("false") == .bool(false))
        #expect(try JSONParser.parse("0") == .int(0))
        #expect(try JSONParser.parse("-0") == .int(0))
        #expect(try JSONParser.parse("42") == .int(42))
        #expect(try JSONParser.parse("-17") == .int(-17))
        #expect(try JSONParser.parse("2.5") == .double(2.5))
        #expect(try JSONParser.parse("1.0") == .double(1.0))
        #expect(try JSONParser.parse("-1.5e3") == .double(-1500))
        #expect(try JSONParser.parse("1E2") == .double(100))
        #expect(try JSONParser.parse("1e-2") == .double(0.01))
        #expect(try JSONParser.parse("\"hi\"") == .string("hi"))
    }

    @Test func whitespaceAroundAndInside() throws {
        let value = try JSONParser.parse(" \t\r\n{ \"a\" : [ 1 , 2 ] }\n ")
        #expect(value == ["a": [1, 2]])
    }

    @Test func containers() throws {
        #expect(try JSONParser.parse("[]") == .array([]))
        #expect(try JSONParser.parse("{}") == .object([:]))
        let value = try JSONParser.parse(#"{"a":{"b":[1,"x",null,true,{"c":-2.25}]},"d":""}"#)
        #expect(value == ["a": ["b": [1, "x", .null, true, ["c": -2.25]]], "d": ""])
    }

    @Test func int64Boundaries() throws {
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONParser.parse("-9223372036854775808") == .int(Int64.min))
        #expect(try JSONParser.parse("9223372036854775808") == .double(9223372036854775808.0))
        #expect(try JSONParser.parse("-9223372036854775809") == .double(-9223372036854775809.0))
        #expect(try JSONParser.parse("123456789012345678901234567890") == .double(1.2345678901234568e29))
        #expect(try JSONParser.parse("1e308") == .double(1e308))
        #expect(try JSONParser.parse("1e-400") == .double(0))
    }

    @Test func escapes() throws {
        let value = try JSONParser.parse(#""q\" b\\ s\/ \b\f\n\r\t end""#)
        #expect(value == .string("q\" b\\ s/ \u{08}\u{0C}\n\r\t end"))
        #expect(try JSONParser.parse(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try JSONParser.parse(#""\u0000""#) == .string("\u{0}"))
        #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONParser.parse(#""x\uD834\uDD1Ey""#) == .string("x𝄞y"))
    }

    @Test func unicodeAsUTF8() throws {
        #expect(try JSONParser.parse("\"héllo wörld — 日本語 😀\"") == .string("héllo wörld — 日本語 😀"))
        #expect(try JSONParser.parse("{\"ключ\":\"значение\"}") == ["ключ": "значение"])
    }

    @Test func byteCollectionsAndBuffers() throws {
        let bytes: [UInt8] = Array(#"{"a":[1,2]}"#.utf8)
        #expect(try JSONParser.parse(bytes) == ["a": [1, 2]])
        #expect(try JSONParser.parse(bytes[...]) == ["a": [1, 2]])
        let viaBuffer = try bytes.withUnsafeBytes { buffer throws(JSONParseError) in try JSONParser.parse(buffer) }
        #expect(viaBuffer == ["a": [1, 2]])
        let nonContiguous = bytes.lazy.map { $0 }
        #expect(try JSONParser.parse(nonContiguous) == ["a": [1, 2]])
    }

    @Test func nestingUpToTheLimit() throws {
        let depth = JSONParser.defaultMaxDepth
        let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        var value = try JSONParser.parse(text)
        var levels = 0
        while case .array(let inner) = value {
            levels += 1
            value = inner.first ?? .null
        }
        #expect(levels == depth)
        let objects = String(repeating: "{\"a\":", count: 10) + "1" + String(repeating: "}", count: 10)
        #expect(try JSONParser.parse(objects, maxDepth: 10)["a"]?["a"] != nil)
    }
}

/// Rejected documents, each with its message and byte offset.
@Suite(.ownThreads) struct JSONParserRejectionTests {
    static let cases: [(String, String, Int)] = [
        ("", "empty input", 0),
        ("   ", "unexpected end of input", 3),
        ("{\"a\":1} x", "unexpected trailing characters", 8),
        ("[1] [2]", "unexpected trailing characters", 4),
        ("01", "leading zeros are not allowed", 0),
        ("-01", "leading zeros are not allowed", 0),
        ("[00]", "leading zeros are not allowed", 1),
        ("NaN", "NaN and Infinity are not valid JSON numbers", 0),
        ("Infinity", "NaN and Infinity are not valid JSON numbers", 0),
        ("-Infinity", "NaN and Infinity are not valid JSON numbers", 0),
        ("[1,NaN]", "NaN and Infinity are not valid JSON numbers", 3),
        ("1e400", "number out of range", 0),
        ("-1e400", "number out of range", 0),
        ("1.", "expected a digit after '.'", 2),
        (".5", "unexpected character '.'", 0),
        ("1e", "expected a digit in exponent", 2),
        ("1e+", "expected a digit in exponent", 3),
        ("-", "expected a digit", 1),
        ("+1", "unexpected character '+'", 0),
        ("{\"a\":1,\"a\":2}", "duplicate key \"a\"", 7),
        ("{\"x\":{\"k\":1,\"k\":1}}", "duplicate key \"k\"", 12),
        ("\"a\u{01}b\"", "unescaped control character in string", 2),
        ("\"tab\there\"", "unescaped control character in string", 4),
        ("\"line\nbreak\"", "unescaped control character in string", 5),
        (#""\ud83d""#, "lone surrogate in \\u escape", 1),
        (#""\ud83dx""#, "lone surrogate in \\u escape", 1),
        (#""\ud83d\u0041""#, "lone surrogate in \\u escape", 1),
        (#""\ude00""#, "lone surrogate in \\u escape", 1),
        (#""\u12G4""#, "invalid \\u escape", 5),
        (#""\x""#, "invalid escape sequence", 1),
        ("\"abc", "unterminated string", 0),
        ("[1,2", "unterminated array", 0),
        ("[1,]", "unexpected character ']'", 3),
        ("{\"a\":1,}", "expected a string key in object", 7),
        ("{\"a\" 1}", "expected ':' after object key", 5),
        ("{a:1}", "expected a string key in object", 1),
        ("{\"a\":1", "unterminated object", 0),
        ("[1 2]", "expected ',' or ']' in array", 3),
        ("{\"a\":1 \"b\":2}", "expected ',' or '}' in object", 7),
        ("tru", "invalid literal", 0),
        ("nul", "invalid literal", 0),
        ("True", "unexpected character 'T'", 0),
        ("'a'", "unexpected character '''", 0),
    ]

    @Test(arguments: cases)
    func rejects(_ input: String, _ message: String, _ offset: Int) {
        #expect(throws: JSONParseError(message, offset: offset)) { try JSONParser.parse(input) }
    }

    @Test func invalidUTF8() {
        let cases: [[UInt8]] = [
            [0x22, 0xFF, 0x22],  // never valid
            [0x22, 0xC0, 0xAF, 0x22],  // overlong '/'
            [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong 3-byte
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-8 encoded surrogate
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xC3, 0x22],  // truncated sequence
            [0x22, 0xE2, 0x82, 0x22],  // truncated 3-byte
            [0x22, 0x80, 0x22],  // stray continuation
        ]
        for bytes in cases {
            #expect(throws: JSONParseError("invalid UTF-8", offset: 1)) { try JSONParser.parse(bytes) }
        }
        // Outside strings, a non-ASCII byte is simply unexpected.
        #expect(throws: JSONParseError("unexpected byte 0xC3", offset: 0)) { try JSONParser.parse([0xC3, 0xA9]) }
        // In an escaped string too.
        #expect(throws: JSONParseError("invalid UTF-8", offset: 3)) { try JSONParser.parse([0x22, 0x5C, 0x6E, 0xFF, 0x22]) }
    }

    @Test func nestingBeyondTheLimit() {
        let depth = JSONParser.defaultMaxDepth + 1
        let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(throws: JSONParseError("nesting deeper than 64 levels", offset: 64)) { try JSONParser.parse(text) }
        let objects = String(repeating: "{\"a\":", count: 3) + "1" + String(repeating: "}", count: 3)
        #expect(throws: JSONParseError("nesting deeper than 2 levels", offset: 10)) {
            try JSONParser.parse(objects, maxDepth: 2)
        }
        // A hostile depth fails fast instead of exhausting the stack.
        let hostile = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(hostile) }
    }

    @Test func errorDescriptionIncludesTheOffset() {
        let error = JSONParseError("duplicate key \"a\"", offset: 7)
        #expect(error.description == "duplicate key \"a\" at byte 7")
    }

    @Test func longDuplicateKeysAreAbbreviated() throws {
        let key = String(repeating: "k", count: 100)
        let error = #expect(throws: JSONParseError.self) { try JSONParser.parse("{\"\(key)\":1,\"\(key)\":2}") }
        #expect(error?.message == "duplicate key \"\(String(repeating: "k", count: 64))…\"")
    }
}
