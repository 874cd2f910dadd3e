import LineRPC
import TestThreads
import Testing
import WireJSON

/// TCP authentication, rpc.hello and rpc.discover.
@Suite(.ownThreads) struct SecurityAndDiscoveryTests {
    private func tcpServer() async throws -> (TestServer, Int) {
        let server = try await TestServer {
            $0.tcp = .init(host: "127.0.0.1", port: 0)
            $0.token = "s3cret-token"
            $0.limits.maxFailedHellos = 3
        }
        return (server, try #require(server.server.tcpPort))
    }

    @Test func tcpRequiresAHelloWithTheToken() async throws {
        let (server, port) = try await tcpServer()
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port)
        let refused = await #expect(throws: RPCError.self) { try await client.call("rpc.ping") }
        #expect(refused?.code == -32005)
        #expect(refused?.type == "unauthorized")
        let unknown = await #expect(throws: RPCError.self) { try await client.call("no.such.method") }
        #expect(unknown?.code == -32005)  // method names are not revealed before authentication
        // No token is not a wrong token (on its own connection: failed hellos are capped).
        let anonymous = try await RPCClient.connect(host: "127.0.0.1", port: port)
        for missing: JSONValue in [[:], ["token": ""]] {
            let error = await #expect(throws: RPCError.self) { try await anonymous.call("rpc.hello", missing) }
            #expect(error?.code == -32005 && error?.message.hasPrefix("token required") == true)
        }
        try await anonymous.close()
        let wrong = await #expect(throws: RPCError.self) { try await client.call("rpc.hello", ["token": "guess"]) }
        #expect(wrong?.message == "invalid token")
        let hello = try await client.call("rpc.hello", ["token": "s3cret-token"])
        #expect(hello["transport"] == "tcp")
        #expect(try await client.call("rpc.ping") == ["pong": true])
        #expect(try await client.call("test.echo", ["value": "ok"]) == ["value": "ok"])
        try await client.close()

        let withToken = try await RPCClient.connect(host: "127.0.0.1", port: port, token: "s3cret-token")
        #expect(try await withToken.call("rpc.ping") == ["pong": true])
        try await withToken.close()
        await #expect(throws: RPCError.self) { try await RPCClient.connect(host: "127.0.0.1", port: port, token: "nope") }
        try await server.stop()
    }

    @Test func repeatedFailedHellosCloseTheConnection() async throws {
        let (server, port) = try await tcpServer()
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port)
        for attempt in 1...3 {
            let error = await #expect(throws: RPCError.self) { try await client.call("rpc.hello", ["token": .string("guess-\(attempt)")]) }
            #expect(error?.code == -32005)
        }
        // Closed after the third failure: even the right token is too late on this connection.
        await #expect(throws: RPCClientError.self) { try await withTimeout { try await client.call("rpc.hello", ["token": "s3cret-token"]) } }
        try await client.close()
        // The Unix socket needs no token.
        let local = try await server.client()
        #expect(try await local.call("rpc.ping") == ["pong": true])
        try await local.close()
        try await server.stop()
    }

    @Test func helloDescribesTheServer() async throws {
        let server = try await TestServer {
            $0.serverVersion = "9.9.9"
            $0.limits.maxBatch = 7
            $0.helloExtras = { _, _ in ["dimensions": ["status", "label"]] }
        }
        let client = try await server.client()
        let hello = try await client.call("rpc.hello", ["client": "tests"])
        #expect(hello["server"] == "segmentd")
        #expect(hello["version"] == "9.9.9")
        #expect(hello["protocol"] == "1")
        #expect(hello["transport"] == "unix")
        #expect(hello["dimensions"] == ["status", "label"])
        #expect(hello["limits"] == [
            "max_line_bytes": 1_048_576, "max_batch": 7, "max_in_flight": 32, "max_connections": 1024,
            "idle_timeout_ms": 300_000, "line_timeout_ms": 30_000, "max_failed_hellos": 5,
        ])
        try await client.close()
        try await server.stop()
    }

    @Test func discoverListsEveryMethodWithItsSchemas() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let document = try await client.call("rpc.discover")
        #expect(document["openrpc"] == "1.2.6")
        #expect(document["info"]?["title"] == "segmentd")
        let methods = try #require(document["methods"]?.arrayValue)
        let names = methods.compactMap { $0["name"]?.stringValue }
        #expect(names == [
            "rpc.cancel", "rpc.discover", "rpc.hello", "rpc.ping",
            "test.crash", "test.echo", "test.gate", "test.missing", "test.sleep", "test.stream",
        ])
        let echo = try #require(methods.first { $0["name"] == "test.echo" })
        #expect(echo["summary"] == "Returns its params.")
        #expect(echo["paramStructure"] == "by-name")
        #expect(echo["params"] == [["name": "value", "required": true, "schema": ["type": "string"]]])
        #expect(echo["result"] == ["name": "test.echo.result", "schema": ["type": "object"]])
        #expect(echo["x-params-schema"]?["required"] == ["value"])
        let stream = try #require(methods.first { $0["name"] == "test.stream" })
        #expect(stream["x-streaming"] == true)
        #expect(echo["x-streaming"] == nil)
        #expect(document["components"]?["errors"]?["cancelled"] == ["code": -32800, "message": "request cancelled", "data": ["type": "cancelled"]])
        #expect(document["components"]?["errors"]?.objectValue?.count == 13)
        #expect(document["components"]?["errors"]?["unavailable"]?["code"] == -32007)
        try await client.close()
        try await server.stop()
    }
}
