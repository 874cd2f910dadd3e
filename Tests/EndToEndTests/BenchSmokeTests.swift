import Foundation
import PostgresStore
import TestPostgres
import TestThreads
import Testing
import WireJSON

/// `segmentd bench` end to end on a small book: the bench refuses to report a count that
/// differs from the hand-written SQL answer or a resolve that streamed a different number of
/// rows, so a clean exit means every answer matched the baseline. The figures themselves are
/// measured with the release build (README), never asserted here.
@Suite(.ownThreads) struct BenchSmokeTests {
    @Test func aSmallBenchRunsEveryMeasurementAndMatchesTheBaseline() async throws {
        // Short (the bench puts its own directory and the server's socket inside TMPDIR).
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try await runProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["bench", "--contacts", "3000", "--seed", "7", "--runs", "1", "--json", directory + "/bench.json"],
            cwd: directory, environment: ["PATH": "/usr/bin:/bin", "TMPDIR": directory + "/"], timeout: 240)
        #expect(run.status == 0, "bench failed: \(run.err.suffix(2_000))")
        let report = try JSONParser.parse(String(contentsOfFile: directory + "/bench.json", encoding: .utf8))
        let figures = report["figures"]?.arrayValue ?? []
        let names = figures.compactMap { $0["name"]?.stringValue }
        #expect(report["contacts"] == 3000)
        // Ten segments, each server side and round trip, with their baseline.
        let counts = figures.filter { $0["name"]?.stringValue?.hasPrefix("count ") == true }
        #expect(counts.count == 20, "\(names)")
        for figure in counts {
            #expect((figure["value"]?.doubleValue ?? 0) > 0 && (figure["baseline"]?.doubleValue ?? 0) > 0, "\(figure)")
        }
        for prefix in ["ingest", "start-up", "resident memory", "resolve CSV+gzip", "upsert updates (", "upsert updates with 100 triggers", "rpc.ping"] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no \(prefix) figure in \(names)")
        }
        #expect(run.out.contains("| figure | segmentd | baseline | ratio | target | met |"))
        #expect(!names.contains { $0.hasPrefix("many books:") } && report["books"] == 0, "many-books figures without --books")
    }

    /// `--store`: the same writes through SQLite and PostgreSQL, a follower's lag and a join,
    /// on the test process's PostgreSQL. Only the figures' presence is asserted.
    @Test func aFleetBenchComparesPostgreSQLWithSQLite() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try TestPostgres.shared().url.description
        let run = try await runProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["bench", "--store", store, "--contacts", "2000", "--seed", "7", "--update-rate", "2000", "--lag-seconds", "1", "--json", directory + "/fleet.json"],
            cwd: directory, environment: ["PATH": "/usr/bin:/bin", "TMPDIR": directory + "/"], timeout: 300)
        #expect(run.status == 0, "bench failed: \(run.err.suffix(2_000))")
        let report = try JSONParser.parse(String(contentsOfFile: directory + "/fleet.json", encoding: .utf8))
        #expect(report["contacts"] == 2000)
        for backend in ["sqlite", "postgres"] {
            for figure in ["ingest_per_s", "updates_per_s", "count_ms"] {
                #expect((report[backend]?[figure]?.doubleValue ?? 0) > 0, "\(backend).\(figure) in \(report.serialized())")
            }
        }
        #expect((report["follower_lag_ms"]?["p99"]?.doubleValue ?? -1) >= 0 && (report["join_seconds"]?.doubleValue ?? 0) > 0)
        let rounds = report["update_ratio_rounds"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        #expect(rounds.count == 5 && rounds.allSatisfy { $0 > 0 }, "updates alternate the stores, five rounds: \(rounds)")
        #expect(run.out.contains("| figure | SQLite | PostgreSQL | PostgreSQL ÷ SQLite |"))
    }

    /// `--books`: the big book alone, then beside small books created over RPC, each after a
    /// fresh start. Only the figures' presence and a generous ratio are asserted: the big
    /// book's counts with the books loaded against the same counts alone, in the same run.
    @Test func aManyBooksBenchComparesTheBigBookWithItselfAlone() async throws {
        let directory = try TestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try await runProcess(
            productsDirectory().appendingPathComponent("segmentd").path,
            ["bench", "--contacts", "2000", "--books", "20", "--seed", "7", "--runs", "1", "--json", directory + "/bench.json"],
            cwd: directory, environment: ["PATH": "/usr/bin:/bin", "TMPDIR": directory + "/"], timeout: 300)
        #expect(run.status == 0, "bench failed: \(run.err.suffix(2_000))")
        let report = try JSONParser.parse(String(contentsOfFile: directory + "/bench.json", encoding: .utf8))
        #expect(report["books"] == 20)
        let figures = (report["figures"]?.arrayValue ?? []).filter { $0["name"]?.stringValue?.hasPrefix("many books: ") == true }
        let names = figures.compactMap { $0["name"]?.stringValue }
        for prefix in [
            "many books: start-up until the default book answers, 20 small books", "many books: every book ready in books.list (21 books)",
            "many books: 10 big-book counts while 20 books load, p50", "many books: 10 big-book counts while 20 books load, p90",
            "many books: 10 big-book counts, 20 books loaded, p50", "many books: resident memory, 20 books loaded",
            "many books: resident memory per small book", "many books: count on a small book",
        ] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no \(prefix) figure in \(names)")
        }
        #expect(names.filter { $0.hasPrefix("many books: count ") && $0.hasSuffix(", round trip, 20 books loaded") }.count == 10, "\(names)")
        // Every figure with a baseline has it from the run with the big book alone.
        for figure in figures where figure["baseline"] != nil {
            #expect((figure["value"]?.doubleValue ?? 0) > 0 && (figure["baseline"]?.doubleValue ?? 0) > 0, "\(figure)")
        }
        let loaded = try #require(figures.first { $0["name"]?.stringValue?.hasPrefix("many books: 10 big-book counts, 20 books loaded") == true })
        let with = try #require(loaded["value"]?.doubleValue), alone = try #require(loaded["baseline"]?.doubleValue)
        #expect(with <= 3 * alone, "the big book's counts took \(with) ms with 20 small books loaded, \(alone) ms alone")
        #expect(run.out.contains("| many books: 10 big-book counts, 20 books loaded, p50"), "\(run.out)")
    }
}
