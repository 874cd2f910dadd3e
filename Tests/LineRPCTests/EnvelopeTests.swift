import LineRPC
import TestThreads
import Testing
import WireJSON

/// Envelope handling, seen as raw lines on a real Unix socket.
@Suite(.ownThreads) struct EnvelopeTests {
    /// Sends each line and returns the next received line, parsed.
    private func exchange(_ client: RPCClient, _ line: String) async throws -> JSONValue {
        try await client.sendLine(line)
        return try await withTimeout { try json(try await client.readLine()) }
    }

    private func errorCode(_ reply: JSONValue) -> Int64? { reply["error"]?["code"]?.intValue }

    @Test func parseErrorKeepsTheConnection() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let reply = try await exchange(client, "{\"jsonrpc\":\"2.0\",")
        #expect(errorCode(reply) == -32700)
        #expect(reply["id"] == .null)
        #expect(reply["error"]?["data"]?["type"] == "parse_error")
        #expect(reply["error"]?["message"]?.stringValue?.contains("at byte") == true)
        let duplicate = try await exchange(client, #"{"jsonrpc":"2.0","id":1,"id":2,"method":"rpc.ping"}"#)
        #expect(errorCode(duplicate) == -32700)
        #expect(duplicate["error"]?["message"]?.stringValue?.contains("duplicate key \"id\"") == true)
        let pong = try await exchange(client, #"{"jsonrpc":"2.0","id":3,"method":"rpc.ping"}"#)
        #expect(pong == ["jsonrpc": "2.0", "id": 3, "result": ["pong": true]])
        try await client.close()
        try await server.stop()
    }

    @Test(arguments: [
        ("42", JSONValue.null),
        ("\"x\"", .null),
        (#"{"jsonrpc":"1.0","id":1,"method":"rpc.ping"}"#, 1),
        (#"{"id":2,"method":"rpc.ping"}"#, 2),
        (#"{"jsonrpc":"2.0","id":3}"#, 3),
        (#"{"jsonrpc":"2.0","id":4,"method":7}"#, 4),
        (#"{"jsonrpc":"2.0","id":{"a":1},"method":"rpc.ping"}"#, .null),
        (#"{"jsonrpc":"2.0","id":1.5,"method":"rpc.ping"}"#, .null),
        (#"{"jsonrpc":"2.0","id":true,"method":"rpc.ping"}"#, .null),
        (#"{"jsonrpc":"2.0","id":"s","method":"rpc.ping","params":"x"}"#, "s"),
        (#"{"jsonrpc":"2.0","method":"rpc.ping","params":5}"#, .null),
    ])
    func invalidRequests(_ line: String, _ id: JSONValue) async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let reply = try await exchange(client, line)
        #expect(errorCode(reply) == -32600, "\(reply)")
        #expect(reply["error"]?["data"]?["type"] == "invalid_request")
        #expect(reply["id"] == id)
        try await client.close()
        try await server.stop()
    }

    @Test func positionalParamsUnknownMethodsAndHandlerErrors() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let positional = try await exchange(client, #"{"jsonrpc":"2.0","id":1,"method":"test.echo","params":[1]}"#)
        #expect(errorCode(positional) == -32602)
        #expect(positional["error"]?["data"] == ["type": "invalid_params", "path": ""])
        let unknown = try await exchange(client, #"{"jsonrpc":"2.0","id":2,"method":"nope.nothing"}"#)
        #expect(errorCode(unknown) == -32601)
        #expect(unknown["error"]?["data"] == ["type": "method_not_found", "method": "nope.nothing"])
        let crash = try await exchange(client, #"{"jsonrpc":"2.0","id":3,"method":"test.crash"}"#)
        #expect(crash["error"] == ["code": -32603, "message": "internal error", "data": ["type": "internal"]])
        let missing = try await exchange(client, #"{"jsonrpc":"2.0","id":"m","method":"test.missing"}"#)
        #expect(missing["error"] == ["code": -32001, "message": "no such thing", "data": ["type": "not_found", "id": 7]])
        #expect(missing["id"] == "m")
        let nullID = try await exchange(client, #"{"jsonrpc":"2.0","id":null,"method":"rpc.ping"}"#)
        #expect(nullID == ["jsonrpc": "2.0", "id": .null, "result": ["pong": true]])
        try await client.close()
        try await server.stop()
    }

    @Test func notificationsGetNoReply() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        try await client.sendLine(#"{"jsonrpc":"2.0","method":"test.echo","params":{"value":"n"}}"#)
        try await client.sendLine(#"{"jsonrpc":"2.0","method":"nope.nothing"}"#)
        try await client.sendLine(#"{"jsonrpc":"2.0","method":"test.crash"}"#)
        try await client.sendLine(#"{"jsonrpc":"2.0","method":"test.echo","params":[1]}"#)
        let pong = try await exchange(client, #"{"jsonrpc":"2.0","id":9,"method":"rpc.ping"}"#)
        #expect(pong["id"] == 9, "\(pong)")
        #expect(await eventually { server.probe["echo"] == 1 })
        try await client.close()
        try await server.stop()
    }

    @Test func mixedBatchRepliesInOneLineInOrder() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let batch = """
            [{"jsonrpc":"2.0","id":1,"method":"test.echo","params":{"value":"a"}},\
            {"jsonrpc":"2.0","method":"test.echo","params":{"value":"notified"}},\
            {"jsonrpc":"2.0","id":2,"method":"nope"},\
            5,\
            {"jsonrpc":"2.0","id":3,"method":"test.sleep","params":{"ms":20}},\
            {"jsonrpc":"2.0","id":4,"method":"test.stream","params":{"n":2}},\
            {"jsonrpc":"2.0","id":5,"method":"rpc.ping"}]
            """
        let reply = try await exchange(client, batch)
        let entries = try #require(reply.arrayValue)
        #expect(entries.count == 6)
        #expect(entries[0] == ["jsonrpc": "2.0", "id": 1, "result": ["value": "a"]])
        #expect(errorCode(entries[1]) == -32601)
        #expect(errorCode(entries[2]) == -32600)
        #expect(entries[2]["id"] == .null)
        #expect(entries[3]["result"] == ["slept": 20])
        #expect(errorCode(entries[4]) == -32600)
        #expect(entries[4]["error"]?["message"]?.stringValue?.contains("streaming") == true)
        #expect(entries[5]["result"] == ["pong": true])
        try await client.close()
        try await server.stop()
    }

    @Test func emptyOversizedAndNotificationOnlyBatches() async throws {
        let server = try await TestServer { $0.limits.maxBatch = 3 }
        let client = try await server.client()
        let empty = try await exchange(client, "[]")
        #expect(errorCode(empty) == -32600)
        #expect(empty["id"] == .null)
        let ping = #"{"jsonrpc":"2.0","id":1,"method":"rpc.ping"}"#
        let tooMany = try await exchange(client, "[\(ping),\(ping),\(ping),\(ping)]")
        #expect(tooMany["error"]?["data"] == ["type": "too_large", "max_batch": 3])
        // All notifications: no line at all, so the next line is the ping's reply.
        let note = #"{"jsonrpc":"2.0","method":"test.echo","params":{"value":"x"}}"#
        try await client.sendLine("[\(note),\(note)]")
        let pong = try await exchange(client, #"{"jsonrpc":"2.0","id":"after","method":"rpc.ping"}"#)
        #expect(pong["id"] == "after")
        try await client.close()
        try await server.stop()
    }

    @Test func oversizedLineGetsAnErrorAndTheConnectionStaysUsable() async throws {
        let server = try await TestServer { $0.limits.maxLineBytes = 1024 }
        let client = try await server.client()
        let big = #"{"jsonrpc":"2.0","id":1,"method":"test.echo","params":{"value":""# + String(repeating: "x", count: 5000) + "\"}}"
        let reply = try await exchange(client, big)
        #expect(reply["id"] == .null)
        #expect(reply["error"]?["data"] == ["type": "too_large", "max_line_bytes": 1024])
        let pong = try await exchange(client, #"{"jsonrpc":"2.0","id":2,"method":"rpc.ping"}"#)
        #expect(pong["result"] == ["pong": true])
        #expect(server.statistics().errorsByType["too_large"] == 1)
        try await client.close()
        try await server.stop()
    }

    @Test func duplicateInFlightIDIsRefused() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        // A gate keeps id 1 in flight until the duplicate has been answered, however slow the machine.
        try await client.sendLine(#"{"jsonrpc":"2.0","id":1,"method":"test.gate"}"#)
        #expect(await eventually { server.probe["gate.waiting"] == 1 })
        let duplicate = try await exchange(client, #"{"jsonrpc":"2.0","id":1,"method":"test.echo"}"#)
        #expect(errorCode(duplicate) == -32600)
        server.probe.bump("gate.open")
        let opened = try await withTimeout { try json(try await client.readLine()) }
        #expect(opened["result"] == ["opened": true])
        try await client.close()
        try await server.stop()
    }
}
