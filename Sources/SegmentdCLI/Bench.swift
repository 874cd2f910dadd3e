import ArgumentParser
import Foundation
import PostgresStore
import SegmentBench
import WireJSON

/// `segmentd bench`: measures segmentd against hand-written SQL on the same synthetic book.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark: load a synthetic book over the socket, compare with a plain-SQLite baseline, print a table.",
        discussion: "Build with -c release for meaningful figures: swift run -c release segmentd bench --contacts 1000000")

    @Option(help: "Contacts in the synthetic book.") var contacts = 100_000
    @Option(help: "Seed of the synthetic book (same seed, same book).") var seed: UInt64 = 42
    @Option(help: "Timed runs per count (the median is reported).") var runs = 15
    @Option(help: "Small books to create beside the big one, then compare start-up, counts and memory with it alone (0: skip).")
    var books = 0
    @Option(help: "Also write the figures as JSON to this file.") var json: String?
    @Option(help: "Benchmark the PostgreSQL store instead (postgres://…): ingest and update rates through it and through SQLite in the same run, a follower's lag under --update-rate contact updates/s, and a new node's join time.")
    var store: String?
    @Option(help: "With --store: contact updates per second during the follower-lag phase (default: 10000).") var updateRate = 10_000
    @Option(help: "With --store: seconds the follower-lag phase lasts (default: 10).") var lagSeconds = 10.0

    func validate() throws {
        guard books >= 0 else { throw ValidationError("--books must be 0 or more") }
    }

    func run() async throws {
        if let store {
            var bench = FleetBench(url: try PostgresURL(store), contacts: contacts, seed: seed) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            bench.updateRate = updateRate
            bench.lagSeconds = lagSeconds
            let report = try await bench.run()
            print("segmentd bench --store … --contacts \(contacts) --seed \(seed)\n")
            print(report.table)
            if let json { try report.json.serialized().write(toFile: json, atomically: false, encoding: .utf8) }
            return
        }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        var runner = BenchRunner(contacts: contacts, seed: seed, binary: binary) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        runner.runs = runs
        runner.books = books
        let report = try await runner.run()
        print("segmentd bench --contacts \(contacts) --seed \(seed)\(books > 0 ? " --books \(books)" : "") on \(report.machine)\n")
        print(report.table)
        if let json { try report.json.serialized().write(toFile: json, atomically: false, encoding: .utf8) }
    }
}
