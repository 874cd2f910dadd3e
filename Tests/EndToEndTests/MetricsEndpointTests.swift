import Foundation
import LineRPC
import SegmentCore
import SegmentdApp
import SegmentEngine
import Synchronization
import Testing
import TestThreads
import WireJSON

/// `--metrics`: `/metrics` in Prometheus text format, scraped under load and parsed by a real
/// Prometheus parser (Python's prometheus_client), moves by what the load did.
@Suite(.ownThreads) struct MetricsEndpointTests {
    static let scraper = packageRoot.appendingPathComponent("Tests/Scripts/scrape_metrics.py").path

    /// One parsed scrape, read like the server reads its own.
    typealias Scrape = MetricsSnapshot

    /// Scrapes `scrapes` times with prometheus_client's parser; returns the last scrape.
    static func scrape(_ server: TestServer, scrapes: Int = 1) async throws -> Scrape {
        let address = try #require(server.app.metricsAddress.current, "the metrics endpoint listens")
        let run = try await runProcess("/usr/bin/env", ["python3", scraper, "http://\(address.host):\(address.port)/metrics", "\(scrapes)"], timeout: 120)
        try #require(run.status == 0, "scrape failed (CI installs prometheus_client from PyPI): \(run.err)")
        var scrape = Scrape(samples: [])
        let lines = run.out.split(separator: "\n")
        #expect(try JSONParser.parse(String(lines[0]))["scrapes"]?.intValue == Int64(scrapes))
        for line in lines.dropFirst() {
            let sample = try JSONParser.parse(String(line))
            let labels = (sample["labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
            scrape.samples.append(.init(name: sample["name"]?.stringValue ?? "", labels: labels, value: sample["value"]?.doubleValue ?? .nan))
        }
        return scrape
    }

    static func started() async throws -> TestServer {
        let server = try await TestServer.start { $0.metrics = "127.0.0.1:0" }
        #expect(await waitUntil(seconds: 30) { server.app.metricsAddress.current != nil })
        return server
    }

    @Test func countersMoveByWhatTheLoadDid() async throws {
        let server = try await Self.started()
        let setup = try await server.client()
        let segment = try await setup.call("segments.create", ["name": "VIP", "filters": [["dimension": "label", "op": "contains", "value": "vip"]]])
        let id = try #require(segment["id"])
        _ = try await setup.call("triggers.create", ["segment": id])
        let before = try await Self.scrape(server)

        // A subscriber that takes every event the load will cause.
        let subscriber = try await server.client()
        let delivered = Mutex(0)
        let subscription = Task {
            try await subscriber.call("events.subscribe", ["after": 0]) { _, _ in delivered.withLock { $0 += 1 } }
        }
        #expect(await waitUntil(seconds: 30) { server.app.engine.subscribers.deliveredCursors.count == 1 })

        // The load, while another process scrapes and parses the endpoint over and over.
        let scraping = Task { try await Self.scrape(server, scrapes: 20) }
        let batches = 4, perBatch = 50, vipEvery = 5, counts = 30, misses = 5
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let client = try await server.client()
                for batch in 0..<batches {
                    let contacts: [JSONValue] = (0..<perBatch).map { i in
                        let n = batch * perBatch + i
                        return ["email": .string("c\(n)@example.com"), "labels": n % vipEvery == 0 ? ["vip"] : []]
                    }
                    _ = try await client.call("contacts.upsert", ["contacts": .array(contacts)])
                }
                try await client.close()
            }
            group.addTask {
                let client = try await server.client()
                for _ in 0..<counts { _ = try await client.call("segments.count", ["id": id]) }
                for _ in 0..<misses { await #expect(throws: RPCError.self) { try await client.call("segments.get", ["id": 999]) } }
                try await client.close()
            }
            try await group.waitForAll()
        }
        let vips = batches * perBatch / vipEvery
        let streamed = try await setup.call("segments.resolve", ["id": id, "format": "csv"]) { _, _ in }
        #expect(streamed["rows"]?.intValue == Int64(vips))
        #expect(await waitUntil(seconds: 30) { delivered.withLock { $0 } == vips })
        let underLoad = try await scraping.value
        // Twenty scrapes, each parsed; the last shows at least the requests made before the load.
        #expect(underLoad.value("segmentd_rpc_requests_total") >= before.value("segmentd_rpc_requests_total"))

        // The server counts an event once its write returned, which can trail the client's read.
        #expect(await waitUntil(seconds: 30) { server.app.engine.subscribers.deliveredCursors == [server.app.engine.newestCursor] })
        let after = try await Self.scrape(server)
        func moved(_ name: String, _ labels: [String: String] = [:]) -> Double { after.value(name, labels) - before.value(name, labels) }
        #expect(moved("segmentd_rpc_requests_total", ["method": "contacts.upsert", "outcome": "ok"]) == Double(batches))
        #expect(moved("segmentd_rpc_requests_total", ["method": "segments.count", "outcome": "ok"]) == Double(counts))
        #expect(moved("segmentd_rpc_requests_total", ["method": "segments.get", "outcome": "not_found"]) == Double(misses))
        #expect(moved("segmentd_rpc_errors_total", ["type": "not_found"]) == Double(misses))
        #expect(moved("segmentd_rpc_request_duration_seconds_count", ["method": "segments.count"]) == Double(counts))
        #expect(moved("segmentd_rpc_request_duration_seconds_sum", ["method": "segments.count"]) > 0)
        #expect(moved("segmentd_contacts_upserted_total", ["book": "default"]) == Double(batches * perBatch))
        #expect(moved("segmentd_trigger_events_total", ["book": "default", "type": "enter"]) == Double(vips))
        #expect(moved("segmentd_stream_rows_total", ["method": "segments.resolve"]) == Double(vips))
        #expect(moved("segmentd_events_delivered_total") == Double(vips))
        #expect(moved("segmentd_stream_bytes_total", ["method": "segments.resolve"]) > Double(vips * 10))
        #expect(moved("segmentd_rpc_received_bytes_total") > 0 && moved("segmentd_rpc_sent_bytes_total") > 0)
        // Read off the book and the process when scraped.
        #expect(after.value("segmentd_book_contacts", ["book": "default"]) == Double(batches * perBatch))
        #expect(after.value("segmentd_book_version", ["book": "default"]) == Double(server.app.engine.snapshot.version))
        #expect(after.value("segmentd_subscribers", ["book": "default"]) == 1)
        #expect(after.value("segmentd_subscriber_lag_events", ["book": "default"]) == 0)
        #expect(after.value("segmentd_sqlite_wal_bytes", ["book": "default"]) > 0)
        #expect(!after.samples.contains { $0.name.hasPrefix("segmentd_fleet_") }, "no fleet series outside a fleet")
        #expect(after.value("segmentd_books", ["state": "ready"]) == 1)
        #expect(after.value("process_resident_memory_bytes") > 1_000_000)
        #expect(after.value("segmentd_rpc_connections_open") >= 2, "the setup and subscriber connections")

        // server.stats reads the same metrics.
        let stats = try await setup.call("server.stats")
        #expect(stats["rpc"]?["requests_by_method"]?["contacts.upsert"]?.intValue == Int64(after.value("segmentd_rpc_requests_total", ["method": "contacts.upsert"])))
        #expect(stats["rpc"]?["errors_by_type"]?["not_found"]?.intValue == Int64(misses))

        subscription.cancel()
        _ = await subscription.result
        #expect(await waitUntil(seconds: 30) { server.app.engine.subscribers.deliveredCursors.isEmpty })
        try await subscriber.close()
        try await setup.close()
        try await server.stop()
    }

    /// A subscriber that is behind shows as lag, in events, until it catches up.
    @Test func subscriberLagCountsEventsNotYetDelivered() async throws {
        let server = try await Self.started()
        let client = try await server.client()
        let segment = try await client.call("segments.create", ["name": "All", "filters": [["dimension": "label", "op": "contains", "value": "x"]]])
        _ = try await client.call("triggers.create", ["segment": try #require(segment["id"])])
        _ = try await client.call("contacts.upsert", ["contacts": .array((0..<30).map { ["email": .string("l\($0)@example.com"), "labels": ["x"]] })])
        // A registered stream that has delivered only through cursor 10.
        let handle = server.app.engine.subscribers.open(after: 10)
        let behind = try await Self.scrape(server)
        #expect(behind.value("segmentd_subscribers", ["book": "default"]) == 1)
        #expect(behind.value("segmentd_subscriber_lag_events", ["book": "default"]) == 20)
        handle.delivered(through: 30)
        #expect(try await Self.scrape(server).value("segmentd_subscriber_lag_events", ["book": "default"]) == 0)
        handle.close()
        #expect(try await Self.scrape(server).value("segmentd_subscribers", ["book": "default"]) == 0)
        try await client.close()
        try await server.stop()
    }

    /// A subscriber filtered to one trigger that has everything it wants shows no lag, however
    /// many events the other triggers write.
    @Test func aFilteredSubscriberThatIsUpToDateShowsNoLag() async throws {
        let server = try await Self.started()
        let client = try await server.client()
        var triggers: [JSONValue] = []
        for label in ["x", "y"] {
            let segment = try await client.call("segments.create", ["name": .string(label), "filters": [["dimension": "label", "op": "contains", "value": .string(label)]]])
            let id = try #require(segment["id"])
            let trigger = try await client.call("triggers.create", ["segment": id])
            triggers.append(try #require(trigger["id"]))
        }
        let subscriber = try await server.client()
        let subscription = Task { try await subscriber.call("events.subscribe", ["after": 0, "triggers": [triggers[0]]]) { _, _ in } }
        #expect(await waitUntil(seconds: 30) { server.app.engine.subscribers.deliveredCursors.count == 1 })
        // 30 events of the other trigger, none of this subscriber's.
        _ = try await client.call("contacts.upsert", ["contacts": .array((0..<30).map { ["email": .string("y\($0)@example.com"), "labels": ["y"]] })])
        #expect(await waitUntil(seconds: 30) { server.app.engine.subscribers.deliveredCursors == [30] }, "caught up past the skipped events")
        #expect(try await Self.scrape(server).value("segmentd_subscriber_lag_events", ["book": "default"]) == 0)
        subscription.cancel()
        _ = await subscription.result
        try await subscriber.close()
        try await client.close()
        try await server.stop()
    }

    /// A dropped book's series leave the scrape; a new book's appear.
    @Test func booksComeAndGoFromTheScrape() async throws {
        let server = try await Self.started()
        let client = try await server.client()
        _ = try await client.call("books.create", ["name": "acme"])
        _ = try await client.call("contacts.upsert", ["book": "acme", "contacts": [["email": "a@acme.test"]]])
        let with = try await Self.scrape(server)
        #expect(with.value("segmentd_book_contacts", ["book": "acme"]) == 1)
        #expect(with.value("segmentd_contacts_upserted_total", ["book": "acme"]) == 1)
        #expect(with.value("segmentd_books", ["state": "ready"]) == 2)
        _ = try await client.call("books.drop", ["name": "acme", "confirm": "acme"])
        let without = try await Self.scrape(server)
        #expect(!without.samples.contains { $0.labels["book"] == "acme" }, "no series of a dropped book")
        #expect(without.value("segmentd_books", ["state": "ready"]) == 1)
        try await client.close()
        try await server.stop()
    }

    @Test func noEndpointUnlessAsked() async throws {
        let server = try await TestServer.start()
        try await Task.sleep(for: .milliseconds(200))
        #expect(server.app.metricsAddress.current == nil)
        // The metrics are kept all the same: server.stats reads them.
        let client = try await server.client()
        _ = try await client.call("rpc.ping")
        #expect(try await client.call("server.stats")["rpc"]?["requests_by_method"]?["rpc.ping"] == 1)
        try await client.close()
        try await server.stop()
    }

    @Test func aBadAddressIsRefusedNamingTheOption() async throws {
        let error = await #expect(throws: SegmentError.self) { try await TestServer.start { $0.metrics = "localhost:http" } }
        #expect(error?.path == "metrics" && error?.message.contains("localhost:http") == true)
    }
}
