import LineRPC
import TestThreads
import Testing
import WireJSON

/// Error codes, types and wire form.
@Suite(.ownThreads) struct RPCErrorTests {
    @Test func everyErrorHasItsCodeAndType() {
        let cases: [(RPCError, Int, String)] = [
            (.parseError("p"), -32700, "parse_error"),
            (.invalidRequest("r"), -32600, "invalid_request"),
            (.methodNotFound("m"), -32601, "method_not_found"),
            (.invalidParams(path: "filters[1].value", "bad"), -32602, "invalid_params"),
            (.internalError(), -32603, "internal"),
            (.notFound("n"), -32001, "not_found"),
            (.conflict("c"), -32002, "conflict"),
            (.tooLarge("t"), -32003, "too_large"),
            (.overloaded("o"), -32004, "overloaded"),
            (.unauthorized("u"), -32005, "unauthorized"),
            (.shuttingDown(), -32006, "shutting_down"),
            (.cancelled(), -32800, "cancelled"),
        ]
        for (error, code, type) in cases {
            #expect(error.code == code)
            #expect(error.type == type)
            #expect(error.data?["type"] == .string(type))
        }
    }

    @Test func wireFormRoundTrips() {
        let error = RPCError.invalidParams(path: "filters[1].value", "expected a string")
        #expect(error.json.serialized() == #"{"code":-32602,"data":{"path":"filters[1].value","type":"invalid_params"},"message":"expected a string"}"#)
        #expect(RPCError(json: error.json) == error)
        #expect(RPCError(json: ["message": "no code"]) == nil)
        let conflict = RPCError.conflict("name taken", extra: ["name": "VIP"])
        #expect(conflict.data == ["type": "conflict", "name": "VIP"])
        #expect(RPCError.internalError().message == "internal error")
    }

    @Test func requestsBuiltForUnitTestsCanStream() async throws {
        let sent = Probe()
        let request = RPCRequest(id: 5, method: "x.stream", params: [:]) { message in
            #expect(message == ["jsonrpc": "2.0", "method": "x.item", "params": ["id": 5, "n": 1]])
            sent.bump("notification")
        }
        try await request.notify("x.item", ["n": 1])
        #expect(sent["notification"] == 1)
        let notification = RPCRequest(id: nil, method: "x.stream")
        try await notification.notify("x.item", [:])  // nothing to stream to: a no-op
        #expect(notification.params == .object([:]))
    }
}
