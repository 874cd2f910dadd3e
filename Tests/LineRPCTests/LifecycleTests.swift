import Foundation
import LineRPC
import TestThreads
import Testing
import WireJSON

/// Graceful shutdown, connection limits and the socket file.
@Suite(.ownThreads) struct LifecycleTests {
    @Test func gracefulShutdownFinishesInFlightRequests() async throws {
        // A drain long enough for the slowest machine: what is tested is that the request in
        // flight finishes during it, not how fast (the whole suite on two cores once took
        // longer than the default 10 s to get from shutdown to opening the gate).
        let server = try await TestServer { $0.drainTimeout = .seconds(120) }
        let client = try await server.client()
        // A gate, not a sleep: the request is surely still in flight when the next one comes,
        // however slow the machine.
        let waiter = Task { try await client.call("test.gate") }
        #expect(await eventually { server.probe["gate.waiting"] == 1 })
        server.server.shutdown()
        // New requests on the open connection are refused while the old one drains.
        let refused = await #expect(throws: RPCError.self) { try await withTimeout { try await client.call("test.echo", ["value": "x"]) } }
        #expect(refused == RPCError.shuttingDown())
        server.probe.bump("gate.open")
        #expect(try await withTimeout { try await waiter.value } == ["opened": true])
        let runTask = server.runTask
        try await withTimeout(30) { try await runTask.value }
        #expect(!FileManager.default.fileExists(atPath: server.socketPath))
        // The connection is closed once drained.
        await #expect(throws: (any Error).self) { try await withTimeout { try await client.call("rpc.ping") } }
        await #expect(throws: (any Error).self) { try await RPCClient.connect(unixPath: server.socketPath) }
        try await client.close()
        try await server.stop()
    }

    @Test func drainTimeoutCancelsWhatIsLeftAndEachGetsAReply() async throws {
        let server = try await TestServer { $0.drainTimeout = .milliseconds(200) }
        let client = try await server.client()
        let sleepers = (0..<3).map { _ in Task { try await client.call("test.sleep", ["ms": 30_000]) } }
        #expect(await eventually { server.probe["sleep.started"] == 3 })
        let started = ContinuousClock.now
        server.server.shutdown()
        for sleeper in sleepers {
            let error = await #expect(throws: RPCError.self) { try await withTimeout { try await sleeper.value } }
            #expect(error?.code == -32800)
        }
        let runTask = server.runTask
        try await withTimeout(30) { try await runTask.value }
        // Well under the sleepers' 30 s: the drain timeout cut them short (generous for loaded
        // machines: cancellation has a 10 s grace, the last flush 2 s).
        #expect(ContinuousClock.now - started < .seconds(20))
        #expect(server.probe["sleep.cancelled"] == 3)
        try await client.close()
        try await server.stop()
    }

    @Test func runReturnsWhenCancelled() async throws {
        let server = try await TestServer()
        let client = try await server.client()
        let sleeper = Task { try await client.call("test.sleep", ["ms": 10_000]) }
        #expect(await eventually { server.probe["sleep.started"] == 1 })
        server.runTask.cancel()
        let runTask = server.runTask
        try await withTimeout(30) { try await runTask.value }
        await #expect(throws: (any Error).self) { try await withTimeout { try await sleeper.value } }
        #expect(server.probe["sleep.cancelled"] == 1)
        #expect(!FileManager.default.fileExists(atPath: server.socketPath))
        try await client.close()
        try await server.stop()
    }

    @Test func connectionsBeyondTheLimitAreRefused() async throws {
        let server = try await TestServer { $0.limits.maxConnections = 2 }
        let first = try await server.client()
        let second = try await server.client()
        _ = try await first.call("rpc.ping")
        _ = try await second.call("rpc.ping")
        let third = try await server.client()
        let refusal = try await withTimeout { try json(try await third.readLine()) }
        #expect(refusal["id"] == .null)
        #expect(refusal["error"]?["code"] == -32004)
        #expect(refusal["error"]?["message"] == "too many connections (max 2)")
        #expect(try await withTimeout { try await third.readLine() } == nil)
        #expect(server.statistics().connectionsRefused == 1)
        // A slot frees up when a client leaves.
        try await first.close()
        #expect(await eventually { server.statistics().connectionsOpen == 1 })
        let fourth = try await server.client()
        #expect(try await withTimeout { try await fourth.call("rpc.ping") } == ["pong": true])
        for client in [second, third, fourth] { try await client.close() }
        try await server.stop()
    }

    @Test func socketFileHasMode0600() async throws {
        let server = try await TestServer()
        let attributes = try FileManager.default.attributesOfItem(atPath: server.socketPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(attributes[.type] as? FileAttributeType == .typeSocket)
        try await server.stop()
        let custom = try await TestServer { $0.socketMode = 0o660 }
        let mode = try FileManager.default.attributesOfItem(atPath: custom.socketPath)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o660)
        try await custom.stop()
    }

    @Test func staleSocketFileIsReplaced() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/stale.sock"
        try makeStaleSocket(at: path)
        #expect(FileManager.default.fileExists(atPath: path))
        let server = RPCServer(configuration: .init(unixSocketPath: path), methods: [], logger: testLogger())
        try await server.start()
        let runTask = Task { try await server.run() }
        let client = try await RPCClient.connect(unixPath: path)
        #expect(try await withTimeout { try await client.call("rpc.ping") } == ["pong": true])
        try await client.close()
        server.shutdown()
        try await withTimeout { try await runTask.value }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func liveSocketAndOtherFilesAreNotReplaced() async throws {
        let server = try await TestServer()
        let second = RPCServer(configuration: .init(unixSocketPath: server.socketPath), methods: [], logger: testLogger())
        let live = await #expect(throws: RPCServerError.self) { try await second.start() }
        #expect(live?.message.contains("already listening") == true)
        let client = try await server.client()  // the first server is unharmed
        #expect(try await client.call("rpc.ping") == ["pong": true])
        try await client.close()
        let regular = server.directory + "/regular-file"
        _ = FileManager.default.createFile(atPath: regular, contents: Data("keep me".utf8))
        let third = RPCServer(configuration: .init(unixSocketPath: regular), methods: [], logger: testLogger())
        let notSocket = await #expect(throws: RPCServerError.self) { try await third.start() }
        #expect(notSocket?.message.contains("not a socket") == true)
        #expect(FileManager.default.contents(atPath: regular) == Data("keep me".utf8))
        try await server.stop()
    }

    @Test func configurationErrorsAreClear() async throws {
        let long = "/tmp/" + String(repeating: "x", count: 120) + ".sock"
        let tooLong = RPCServer(configuration: .init(unixSocketPath: long), methods: [], logger: testLogger())
        let error = await #expect(throws: RPCServerError.self) { try await tooLong.start() }
        #expect(error?.message.contains("107-byte limit") == true)
        let noToken = RPCServer(
            configuration: .init(unixSocketPath: nil, tcp: .init(port: 0)), methods: [], logger: testLogger()
        )
        let tokenError = await #expect(throws: RPCServerError.self) { try await noToken.start() }
        #expect(tokenError?.message.contains("requires a token") == true)
        let nothing = RPCServer(configuration: .init(unixSocketPath: nil), methods: [], logger: testLogger())
        await #expect(throws: RPCServerError.self) { try await nothing.start() }
    }
}

/// Leaves a socket file behind with nobody listening, like a crashed server.
func makeStaleSocket(at path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TimeoutError() }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8)
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    close(fd)
    guard result == 0 else { throw TimeoutError() }
}
