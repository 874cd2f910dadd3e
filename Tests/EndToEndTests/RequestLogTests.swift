import Foundation
import LineRPC
import Logging
import SegmentdApp
import SegmentEngine
import Synchronization
import Testing
import TestThreads
import WireJSON

/// Every request leaves a debug line with its method, id, book, duration and outcome; slow
/// ones a warning; a subscriber that ends is logged with its cursor; `--log-format json`
/// writes one JSON object per line.
@Suite(.ownThreads) struct RequestLogTests {
    /// Keeps every record, for the test to read.
    final class Records: Sendable {
        struct Record: Sendable {
            let level: Logger.Level
            let message: String
            let metadata: [String: String]
        }
        private let stored = Mutex([Record]())
        func add(_ record: Record) { stored.withLock { $0.append(record) } }
        var all: [Record] { stored.withLock { $0 } }
    }

    struct RecordingHandler: LogHandler {
        let records: Records
        var logLevel: Logger.Level = .debug
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
            records.add(.init(level: event.level, message: event.message.description, metadata: merged.mapValues { "\($0)" }))
        }
    }

    @Test func everyRequestIsLoggedWithItsBookDurationAndOutcome() async throws {
        let records = Records()
        let server = try await TestServer.start(logger: Logger(label: "segmentd") { _ in RecordingHandler(records: records) })
        let client = try await server.client()
        _ = try await client.call("books.create", ["name": "acme"])
        _ = try await client.call("contacts.count", ["book": "acme"])
        _ = try await client.call("contacts.count")
        _ = try? await client.call("segments.get", ["id": 99])
        _ = try await client.call("rpc.ping")
        _ = try? await client.call("no.such.method")
        let requests = records.all.filter { $0.message == "request" || $0.message == "slow request" }
        func line(_ method: String) -> [Records.Record] { requests.filter { $0.metadata["rpc.method"] == method } }
        #expect(line("contacts.count").map { $0.metadata["book"] } == ["acme", "default"])
        let create = try #require(line("books.create").first)
        #expect(create.metadata["book"] == nil, "books.create is not about a book")
        #expect(line("(unknown)").first?.metadata["outcome"] == "method_not_found", "an unknown name is logged as (unknown), not as sent")
        #expect(line("segments.get").first?.metadata["outcome"] == "not_found")
        #expect(line("rpc.ping").first?.metadata["outcome"] == "ok")
        for record in requests {
            #expect(record.metadata["rpc.id"] != nil && record.metadata["rpc.connection"] != nil)
            #expect(record.metadata["duration_ms"].flatMap(Double.init) != nil, "\(record.metadata)")
        }
        // Lines answered before a request could be read are logged too, with their outcome.
        let raw = try await server.client()
        try await raw.sendLine("{not json")
        _ = try await raw.readLine()
        try await raw.sendLine(#"{"jsonrpc":"1.0","id":5,"method":"rpc.ping"}"#)
        _ = try await raw.readLine()
        #expect(records.all.contains { $0.message == "rejected line" && $0.metadata["outcome"] == "parse_error" })
        #expect(records.all.contains { $0.message == "rejected request" && $0.metadata["outcome"] == "invalid_request" && $0.metadata["rpc.id"] == "5" })
        try await raw.close()
        try await client.close()
        try await server.stop()
    }

    @Test func slowRequestsWarnStreamsDoNotAndEndedSubscribersLeaveTheirCursor() async throws {
        let records = Records()
        let server = try await TestServer.start(logger: Logger(label: "segmentd") { _ in RecordingHandler(records: records) }) {
            $0.slowRequest = .zero  // every request is slow
        }
        let client = try await server.client()
        _ = try await client.call("contacts.count")
        _ = try await client.call("server.backup", ["path": "b.sqlite"])
        let subscription = Task { try await client.call("events.subscribe", ["after": 0]) { _, _ in } }
        #expect(await waitUntil(seconds: 30) { server.app.engine.eventHub.waiterCount == 1 })
        subscription.cancel()
        _ = await subscription.result
        #expect(await waitUntil(seconds: 30) { records.all.contains { $0.message.hasPrefix("subscriber ended") } })
        let ended = try #require(records.all.first { $0.message.hasPrefix("subscriber ended") })
        #expect(ended.metadata["events.cursor"] == "0" && ended.metadata["book"] == "default")
        // The stream's own line comes once its handler returned.
        #expect(await waitUntil(seconds: 30) { records.all.contains { $0.metadata["rpc.method"] == "events.subscribe" } })
        let warnings = records.all.filter { $0.level == .warning && $0.message == "slow request" }
        #expect(warnings.contains { $0.metadata["rpc.method"] == "contacts.count" })
        #expect(!warnings.contains { $0.metadata["rpc.method"] == "events.subscribe" }, "a stream lasts as long as its reader")
        #expect(!warnings.contains { $0.metadata["rpc.method"] == "server.backup" }, "a backup copies a whole book")
        #expect(records.all.contains { $0.message == "request" && $0.metadata["rpc.method"] == "server.backup" })
        try await client.close()
        try await server.stop()
    }

    /// The real binary with `--log-format json`: every line parses, and requests are there.
    @Test func jsonLogFormatWritesOneObjectPerLine() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/server.log"
        let child = ChildProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["serve", "--data-dir", directory + "/data", "--socket", directory + "/s.sock", "--export-dir", directory + "/exports",
             "--log-format", "json", "--log-level", "debug"],
            directory: directory, standardOutput: .file(log), standardError: .file(log))
        try child.start()
        var client: RPCClient?
        for _ in 0..<600 where client == nil && child.isRunning {
            client = try? await RPCClient.connect(unixPath: directory + "/s.sock")
            if client == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let connected = try #require(client)
        _ = try await connected.call("rpc.ping")
        _ = try await connected.call("contacts.count")
        try await connected.close()
        child.terminate()
        child.waitUntilExit()
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count > 3)
        let objects = try lines.map { try JSONParser.parse(String($0)) }
        #expect(objects.allSatisfy { $0["time"]?.stringValue != nil && $0["level"]?.stringValue != nil && $0["message"]?.stringValue != nil })
        // "slow request" on a loaded machine (over 100 ms): the same line at warning.
        let request = objects.first {
            ($0["message"] == "request" || $0["message"] == "slow request") && $0["metadata"]?["rpc.method"] == "contacts.count"
        }
        #expect(request?["metadata"]?["book"] == "default")
        // A duration is a JSON number, so a log query can compare it.
        #expect(request?["metadata"]?["duration_ms"]?.doubleValue != nil && request?["metadata"]?["duration_ms"]?.stringValue == nil, "\(String(describing: request))")
    }
}
