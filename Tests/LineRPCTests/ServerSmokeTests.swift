import LineRPC
import TestThreads
import Testing
import WireJSON

@Suite(.ownThreads) struct ServerSmokeTests {
    @Test func echoAndPing() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let result = try await withTimeout { try await client.call("test.echo", ["value": "hi"]) }
        #expect(result == ["value": "hi"])
        #expect(try await client.call("rpc.ping") == ["pong": true])
        try await client.close()
        try await server.stop()
    }
}
