import Foundation
import LineRPC
import MetricsTestKit
import Logging
import Synchronization
import TestThreads
import WireJSON

/// A test failed to finish in time.
struct TimeoutError: Error, CustomStringConvertible {
    var description: String { "timed out" }
}

/// Runs `body`, failing with ``TimeoutError`` after `seconds` (every wait in these tests is
/// bounded). Only a guard against a hang: nothing here is a speed test, so the default is long
/// enough for a loaded two-core machine.
func withTimeout<T: Sendable>(
    _ seconds: Double = 30,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimeoutError()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// `waitUntil` (TestThreads) for a synchronous condition.
func eventually(_ seconds: Double = 30, _ condition: @Sendable () -> Bool) async -> Bool {
    await waitUntil(seconds: seconds) { condition() }
}

/// Counters the dummy handlers update, so tests can see what happened on the server side.
final class Probe: Sendable {
    private let counts = Mutex([String: Int]())

    func bump(_ name: String) { counts.withLock { $0[name, default: 0] += 1 } }
    subscript(_ name: String) -> Int { counts.withLock { $0[name, default: 0] } }
}

/// The dummy methods the tests register: echo, sleep, stream, a gate the test opens, and two
/// failing ones.
func testMethods(probe: Probe) -> [RPCMethod] {
    let object: JSONValue = ["type": "object"]
    return [
        RPCMethod(
            name: "test.echo", summary: "Returns its params.",
            paramsSchema: ["type": "object", "properties": ["value": ["type": "string"]], "required": ["value"]],
            resultSchema: object
        ) { request in
            probe.bump("echo")
            return request.params
        },
        RPCMethod(
            name: "test.sleep", summary: "Sleeps for ms milliseconds.",
            paramsSchema: ["type": "object", "properties": ["ms": ["type": "integer"]]], resultSchema: object
        ) { request in
            let ms = request.params["ms"]?.intValue ?? 1000
            probe.bump("sleep.started")
            do {
                try await Task.sleep(for: .milliseconds(ms))
            } catch {
                probe.bump("sleep.cancelled")
                throw error
            }
            probe.bump("sleep.finished")
            return ["slept": .int(ms)]
        },
        RPCMethod(
            name: "test.stream", summary: "Streams n items.",
            paramsSchema: ["type": "object", "properties": ["n": ["type": "integer"]]],
            resultSchema: ["type": "object", "properties": ["count": ["type": "integer"]]], streaming: true
        ) { request in
            let n = request.params["n"]?.intValue ?? 0
            for index in 0..<n {
                try await request.notify("test.item", ["index": .int(index)])
            }
            return ["count": .int(n)]
        },
        RPCMethod(
            name: "test.gate", summary: "Waits until the test bumps \"gate.open\" (at most 60 s).",
            paramsSchema: object, resultSchema: object
        ) { _ in
            probe.bump("gate.waiting")
            let deadline = ContinuousClock.now + .seconds(60)
            while probe["gate.open"] == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            return ["opened": .bool(probe["gate.open"] > 0)]
        },
        RPCMethod(name: "test.crash", summary: "Throws a non-RPC error.", paramsSchema: object, resultSchema: object) { _ in
            struct SecretFailure: Error {}
            throw SecretFailure()
        },
        RPCMethod(name: "test.missing", summary: "Throws not_found.", paramsSchema: object, resultSchema: object) { _ in
            throw RPCError.notFound("no such thing", extra: ["id": 7])
        },
    ]
}

/// A running server on a Unix socket in a fresh temporary directory.
final class TestServer: Sendable {
    let server: RPCServer
    let directory: String
    let socketPath: String
    let probe: Probe
    let runTask: Task<Void, any Error>
    /// What the server recorded through swift-metrics.
    let metrics = TestMetrics()

    init(_ configure: (inout RPCServerConfiguration) -> Void = { _ in }) async throws {
        let directory = try makeTemporaryDirectory()
        let socketPath = directory + "/rpc.sock"
        var configuration = RPCServerConfiguration(unixSocketPath: socketPath)
        configuration.metricsFactory = metrics
        configure(&configuration)
        let probe = Probe()
        let server = RPCServer(configuration: configuration, methods: testMethods(probe: probe), logger: testLogger())
        do {
            try await server.start()
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        self.server = server
        self.directory = directory
        self.socketPath = socketPath
        self.probe = probe
        self.runTask = Task { try await server.run() }
    }

    func client() async throws -> RPCClient {
        try await RPCClient.connect(unixPath: socketPath)
    }

    /// The server's figures, as its metrics have them now.
    func statistics() -> RecordedFigures { RecordedFigures(metrics) }

    /// A test that failed before `stop()` still leaves no directory behind (the server's
    /// tasks end with the test process).
    deinit {
        server.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Shuts down gracefully, waits for `run()` to return, and removes the directory.
    func stop() async throws {
        server.shutdown()
        let runTask = self.runTask
        try await withTimeout(15) { try await runTask.value }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/lrpc-XXXXXX".utf8CString)
    guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw TimeoutError()
    }
    return String(cString: result)
}

func testLogger() -> Logger {
    var logger = Logger(label: "linerpc-test")
    logger.logLevel = ProcessInfo.processInfo.environment["LINERPC_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}

/// Parses one received line.
func json(_ line: String?) throws -> JSONValue {
    guard let line else { throw RPCClientError.connectionClosed }
    return try JSONParser.parse(line)
}

/// The RPC metrics a test reads back from ``TestMetrics``.
struct RecordedFigures {
    var connectionsOpen = 0
    var connectionsTotal = 0
    var connectionsRefused = 0
    var requestsInFlight = 0
    var errorsByType: [String: Int] = [:]
    var requestsByOutcome: [String: Int] = [:]

    init(_ metrics: TestMetrics) {
        func gauge(_ label: String) -> Int { Int(metrics.meters(label: label).first?.lastValue ?? 0) }
        connectionsOpen = gauge(RPCMetricName.connectionsOpen)
        requestsInFlight = gauge(RPCMetricName.requestsInFlight)
        connectionsTotal = Int(metrics.counterTotal(label: RPCMetricName.connectionsTotal))
        connectionsRefused = Int(metrics.counterTotal(label: RPCMetricName.connectionsRefused))
        for counter in metrics.counters(label: RPCMetricName.errors) {
            let type = counter.dimensions.first { $0.0 == "type" }?.1 ?? "?"
            errorsByType[type, default: 0] += Int(counter.totalValue)
        }
        for counter in metrics.counters(label: RPCMetricName.requests) {
            let labels = Dictionary(counter.dimensions, uniquingKeysWith: { a, _ in a })
            requestsByOutcome["\(labels["method"] ?? "?") \(labels["outcome"] ?? "?")", default: 0] += Int(counter.totalValue)
        }
    }
}
