import LineRPC
import PostgresStore
import SegmentCore
import SegmentdApp
import SegmentEngine
import TestPostgres
import Testing
import TestThreads
import WireJSON

extension MetricsEndpointTests {
    /// Two nodes on one PostgreSQL: the node that did not write shows, per book, the version
    /// PostgreSQL has, no lag once it applied the other's writes, the change records it
    /// applied, and that it is not stale; exactly one of the two is the clock leader; a fleet
    /// book has no SQLite WAL gauge.
    @Test func fleetFiguresPerBook() async throws {
        try await TestPostgres.with { postgres in
            func node() async throws -> TestServer {
                let server = try await TestServer.start {
                    $0.store = postgres.url.description
                    $0.metrics = "127.0.0.1:0"
                }
                #expect(await waitUntil(seconds: 30) { server.app.metricsAddress.current != nil })
                return server
            }
            let a = try await node(), b = try await node()
            let writer = try await a.client()
            var version: Int64 = 0
            for n in 0..<3 {
                let reply = try await writer.call("contacts.upsert", ["contacts": [["email": .string("m\(n)@fleet.example")]]])
                version = reply["version"]?.intValue ?? 0
            }
            #expect(await waitUntil(seconds: 30) { b.app.engine.snapshot.version >= version })
            let leads = [await a.app.engine.holdsClockLead(), await b.app.engine.holdsClockLead()]
            #expect(leads.filter { $0 }.count == 1, "one clock leader per book: \(leads)")

            let scrape = try await Self.scrape(b)
            let book = ["book": "default"]
            #expect(scrape.value("segmentd_book_version", book) == Double(version))
            #expect(scrape.value("segmentd_fleet_store_version", book) == Double(version))
            #expect(scrape.value("segmentd_fleet_lag_versions", book) == 0)
            #expect(scrape.value("segmentd_fleet_changes_applied_total", book) >= 3, "b applied a's three writes")
            #expect(scrape.value("segmentd_fleet_reloads_total", book) == 0)
            #expect(scrape.value("segmentd_fleet_may_be_stale", book) == 0)
            #expect(scrape.value("segmentd_fleet_store_reached_seconds_ago", book) < 60)
            #expect(scrape.value("segmentd_fleet_clock_leader", book) == (leads[1] ? 1 : 0))
            #expect(!scrape.samples.contains { $0.name == "segmentd_sqlite_wal_bytes" }, "no SQLite WAL on a fleet book")
            let other = try await Self.scrape(a)
            #expect(other.value("segmentd_fleet_clock_leader", book) + scrape.value("segmentd_fleet_clock_leader", book) == 1)

            let stats = try await b.client().call("server.stats")
            #expect(stats["books"]?["default"]?["fleet"]?["clock_leader"] == .bool(leads[1]))
            try await writer.close()
            try await a.stop()
            try await b.stop()
        }
    }
}
