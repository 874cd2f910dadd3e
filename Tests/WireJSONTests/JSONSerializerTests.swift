import TestThreads
import Testing
import WireJSON

/// Compact output, key order, escaping and number formatting.
@Suite(.ownThreads) struct JSONSerializerTests {
    @Test func compactWithSortedKeys() {
        let value: JSONValue = ["b": 1, "a": [true, .null, 2.5], "c": ["z": "", "y": [:]]]
        #expect(value.serialized() == #"{"a":[true,null,2.5],"b":1,"c":{"y":{},"z":""}}"#)
        #expect(JSONValue.array([]).serialized() == "[]")
        #expect(JSONValue.object([:]).serialized() == "{}")
        #expect(value.description == value.serialized())
    }

    @Test func lineHasOneTrailingNewline() {
        let line = JSONValue.object(["a": 1]).serializedLine()
        #expect(line == Array("{\"a\":1}\n".utf8))
        var out: [UInt8] = Array("x".utf8)
        JSONValue.int(5).write(into: &out)
        #expect(out == Array("x5".utf8))
    }

    @Test func integers() {
        #expect(JSONValue.int(0).serialized() == "0")
        #expect(JSONValue.int(-7).serialized() == "-7")
        #expect(JSONValue.int(Int64.max).serialized() == "9223372036854775807")
        #expect(JSONValue.int(Int64.min).serialized() == "-9223372036854775808")
    }

    @Test func doubles() {
        #expect(JSONValue.double(3).serialized() == "3")
        #expect(JSONValue.double(-2).serialized() == "-2")
        #expect(JSONValue.double(2.5).serialized() == "2.5")
        #expect(JSONValue.double(0.1).serialized() == "0.1")
        #expect(JSONValue.double(9_007_199_254_740_992).serialized() == "9007199254740992")
        #expect(JSONValue.double(1e300).serialized() == "1e+300")
        #expect(JSONValue.double(.leastNonzeroMagnitude).serialized() == "5e-324")
        #expect(JSONValue.double(.nan).serialized() == "null")
        #expect(JSONValue.double(.infinity).serialized() == "null")
    }

    @Test func doublesRoundTrip() throws {
        let values: [Double] = [0.1, 1.0 / 3.0, -2.5e-8, 1.7976931348623157e308, .leastNonzeroMagnitude, 123456.789, 1e100, 9.007199254740994e15]
        for value in values {
            let text = JSONValue.double(value).serialized()
            #expect(try JSONParser.parse(text).doubleValue == value, "\(text)")
        }
    }

    @Test func stringEscapes() {
        #expect(JSONValue.string("q\"b\\n\nr\rt\tb\u{08}f\u{0C}").serialized() == #""q\"b\\n\nr\rt\tb\bf\f""#)
        #expect(JSONValue.string("\u{0}\u{1}\u{1F}\u{7F}").serialized() == "\"\\u0000\\u0001\\u001f\u{7F}\"")
        #expect(JSONValue.string("/").serialized() == "\"/\"")
        #expect(JSONValue.string("héllo 日本 😀").serialized() == "\"héllo 日本 😀\"")
        #expect(JSONValue.object(["k\"ey": 1]).serialized() == #"{"k\"ey":1}"#)
    }

    @Test func roundTrips() throws {
        let values: [JSONValue] = [
            .null, true, false, 0, -1, .int(Int64.max), .int(Int64.min), 2.5, -0.125, "", "plain",
            "esc \" \\ / \n \r \t \u{08} \u{0C} \u{0} \u{1F}", "unicode é 日本 😀 𝄞",
            [], [:], [1, [2, [3, [4]]]],
            ["jsonrpc": "2.0", "id": 7, "method": "segments.count", "params": ["filters": [["dimension": "status", "op": "equals", "value": "active"]]]],
        ]
        for value in values {
            let text = value.serialized()
            let reparsed = try JSONParser.parse(text)
            #expect(reparsed == value, "\(text)")
            #expect(reparsed.serialized() == text)
        }
    }

    @Test func parsingAndReserializingIsCanonical() throws {
        let text = #" { "b" : [ 1 , 2.50 , "\u0041" ] , "a" : { } } "#
        #expect(try JSONParser.parse(text).serialized() == #"{"a":{},"b":[1,2.5,"A"]}"#)
    }
}
