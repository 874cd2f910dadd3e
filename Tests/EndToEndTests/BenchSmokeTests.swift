import Foundation
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
        // Nine segments, each server side and round trip, with their baseline.
        let counts = figures.filter { $0["name"]?.stringValue?.hasPrefix("count ") == true }
        #expect(counts.count == 18, "\(names)")
        for figure in counts {
            #expect((figure["value"]?.doubleValue ?? 0) > 0 && (figure["baseline"]?.doubleValue ?? 0) > 0, "\(figure)")
        }
        for prefix in ["ingest", "start-up", "resident memory", "resolve CSV+gzip", "upsert updates (", "upsert updates with 100 triggers", "rpc.ping"] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no \(prefix) figure in \(names)")
        }
        #expect(run.out.contains("| figure | segmentd | baseline | ratio | target | met |"))
    }
}
