import Foundation
import LineRPC
import SegmentCore
import Synchronization
import WireJSON

/// `segmentd bench --books N`: the issue's requirement that a server with many small books and
/// one big one starts, and that the big book's counts are as fast as when it is alone.
///
/// Both sides are measured in the same run, each after a fresh start of the server child on
/// the same files, so neither has ingest garbage or a warmer cache the other lacks: first the
/// big book (the default book, as the rest of the bench left it) alone; then, after N small
/// books were created beside it over RPC, the same measurements with every book there. The
/// small books load in the background after the server starts (2 at a time, smallest first),
/// so the big book's counts are timed twice: while they load and once all are ready.
extension BenchRunner {
    /// What one fresh start of the server measured.
    struct StartMeasurement {
        /// From spawn until the default book answers `contacts.count`.
        var startup: Double
        /// From spawn until `books.list` shows every book `ready`.
        var allReady: Double
        /// One round is every bench segment counted once, one call after another (seconds):
        /// the rounds that started while books were still loading (at least one) …
        var loadingRounds: [Double]
        /// … and the rounds once every book was ready, with each count's own time.
        var loadedRounds: [Double]
        var loadedCounts: [[Double]]
        /// The child's VmRSS once every book was ready and had been counted.
        var residentBytes: Int
        /// The machine's 1-minute load average then: figures of a side measured while other
        /// work ran on the machine are not comparable with the other side's.
        var loadAverage: String

        var summary: String {
            String(format: "start-up %.2f s, all ready %.2f s, counts p50 %.2f ms loading, %.2f ms loaded", startup, allReady,
                   median(loadingRounds) * 1000, median(loadedRounds) * 1000) + "; load average \(loadAverage)"
        }
    }

    /// The segments each small book stores (the first gets a trigger): a newsletter audience and
    /// a re-engagement one, as a small account would keep.
    static let smallBookSegments = ["active newsletter readers", "inactive over 90 days"]

    /// A few dozen contacts: 24 to 60, varying from book to book.
    static func smallBookSize(_ index: Int) -> Int { 24 + index * 17 % 37 }

    func measureManyBooks(directory: String, now: Double, report: inout BenchReport) async throws {
        let segments = BenchSegment.all(now: now)
        // Rounds are cheap (nine counts, ~15 ms at 1M): more of them than --runs spread each
        // side over a second or so, so a burst of other work on the machine moves the ratios less.
        let rounds = max(5 * runs, 51)
        let names = (0..<books).map { "small-" + String($0) }
        let n = Self.grouped(books)
        report.books = books

        log("many books: restarting with the big book alone…")
        let first = try await freshStart(directory: directory, now: now, books: [], segments: segments, rounds: rounds)
        var server = first.server
        let alone = first.measured
        log("many books: alone \(alone.summary)")
        log("many books: creating \(n) small books over the socket…")
        let small = segments.filter { Self.smallBookSegments.contains($0.name) }
        let creating = try await seconds {
            try await Self.createSmallBooks(socket: server.socket, names: names, seed: seed, now: now, segments: small)
        }
        log("many books: created in \(String(format: "%.1f", creating)) s; restarting with \(n) small books beside the big one…")
        server.stop()
        let many: StartMeasurement
        (server, many) = try await freshStart(directory: directory, now: now, books: names, segments: segments, rounds: rounds)
        guard many.loadedRounds.count == rounds else { throw BenchError("counts on the big book stopped early") }
        log("many books: with \(n) small books \(many.summary)")

        // Counts on a few small books, once all are loaded.
        let sample = stride(from: 0, to: books, by: max(1, books / 5)).prefix(5).map { names[$0] }
        let client = try await RPCClient.connect(unixPath: server.socket)
        var smallCounts: [Double] = []
        for _ in 0..<rounds {
            for name in sample {
                for segment in small {
                    smallCounts.append(try await seconds {
                        _ = try await client.call("segments.count", ["book": .string(name), "filters": segment.filters])
                    })
                }
            }
        }
        try await client.close()
        server.stop()
        log("many books: done")

        let target = "as fast as alone (≥ 0.8×)"
        func asFast(_ value: Double, _ baseline: Double) -> Bool { value > 0 && baseline / value >= 0.8 }
        report.figures.append(BenchFigure(
            name: "many books: start-up until the default book answers, \(n) small books", value: many.startup, unit: "s",
            baseline: alone.startup, better: "lower", target: target, met: asFast(many.startup, alone.startup)))
        report.figures.append(BenchFigure(
            name: "many books: every book ready in books.list (\(Self.grouped(books + 1)) books)", value: many.allReady, unit: "s",
            baseline: alone.allReady, better: "lower", target: "", met: nil))
        let aloneRound = median(alone.loadedRounds)
        let loading = median(many.loadingRounds)
        report.figures.append(BenchFigure(
            name: "many books: \(segments.count) big-book counts while \(n) books load, p50 of \(many.loadingRounds.count) rounds",
            value: loading * 1000, unit: "ms", baseline: aloneRound * 1000, better: "lower", target: target, met: asFast(loading, aloneRound)))
        report.figures.append(BenchFigure(
            name: "many books: \(segments.count) big-book counts while \(n) books load, p90", value: percentile(many.loadingRounds, 0.9) * 1000,
            unit: "ms", baseline: percentile(alone.loadedRounds, 0.9) * 1000, better: "lower", target: "", met: nil))
        let loaded = median(many.loadedRounds)
        report.figures.append(BenchFigure(
            name: "many books: \(segments.count) big-book counts, \(n) books loaded, p50 of \(rounds) rounds", value: loaded * 1000, unit: "ms",
            baseline: aloneRound * 1000, better: "lower", target: target, met: asFast(loaded, aloneRound)))
        for (index, segment) in segments.enumerated() {
            let with = median(many.loadedCounts[index]), without = median(alone.loadedCounts[index])
            report.figures.append(BenchFigure(
                name: "many books: count \(segment.name), round trip, \(n) books loaded", value: with * 1000, unit: "ms",
                baseline: without * 1000, better: "lower", target: target, met: asFast(with, without)))
        }
        let rss = Double(many.residentBytes) / 1_048_576, aloneRSS = Double(alone.residentBytes) / 1_048_576
        report.figures.append(BenchFigure(
            name: "many books: resident memory, \(n) books loaded", value: rss, unit: "MB", baseline: aloneRSS, better: "lower", target: "", met: nil))
        report.figures.append(BenchFigure(
            name: "many books: resident memory per small book", value: (rss - aloneRSS) * 1024 / Double(books), unit: "KB", baseline: nil,
            better: "lower", target: "", met: nil))
        report.figures.append(BenchFigure(
            name: "many books: count on a small book (\(sample.count) books × \(small.count) segments), p50", value: median(smallCounts) * 1000,
            unit: "ms", baseline: nil, better: "lower", target: "", met: nil))
    }

    /// Spawns the server on the bench's files and measures it until `books` (besides the
    /// default one) are all ready and the big book was counted `rounds` more times. Returns the
    /// server still running.
    func freshStart(
        directory: String, now: Double, books: [String], segments: [BenchSegment], rounds: Int
    ) async throws -> (server: BenchServer, measured: StartMeasurement) {
        let spawn = ContinuousClock.now
        let server = try BenchServer(binary: binary, directory: directory, frozenClock: ISOTime.format(now))
        let startup = try await server.waitUntilReady(since: spawn, probe: "contacts.count")
        let counter = try await RPCClient.connect(unixPath: server.socket)
        let lister = try await RPCClient.connect(unixPath: server.socket)
        let allLoaded = Flag()
        async let allReady = Self.waitForBooks(lister, names: ["default"] + books, since: spawn, loaded: allLoaded)
        // The big book's counts while the others load: every round that starts before the
        // poller has seen them all ready (so at least one).
        var loadingRounds: [Double] = []
        var expected: [Int]?
        repeat {
            let round = try await Self.countRound(counter, segments, expected: &expected)
            loadingRounds.append(round.reduce(0, +))
        } while !allLoaded.isSet
        let ready = try await allReady
        var loadedRounds: [Double] = []
        var loadedCounts = Array(repeating: [Double](), count: segments.count)
        for _ in 0..<rounds {
            let round = try await Self.countRound(counter, segments, expected: &expected)
            loadedRounds.append(round.reduce(0, +))
            for (index, time) in round.enumerated() { loadedCounts[index].append(time) }
        }
        let resident = server.residentBytes
        let loadAverage = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
        try await counter.close()
        try await lister.close()
        return (server, StartMeasurement(
            startup: startup, allReady: ready, loadingRounds: loadingRounds, loadedRounds: loadedRounds, loadedCounts: loadedCounts,
            residentBytes: resident, loadAverage: loadAverage))
    }

    /// Counts every segment on the default book once, one call after another; the seconds of
    /// each. The answers must be the same every round (the book does not change).
    static func countRound(_ client: RPCClient, _ segments: [BenchSegment], expected: inout [Int]?) async throws -> [Double] {
        var times: [Double] = [], matched: [Int] = []
        for segment in segments {
            var result = JSONValue.null
            times.append(try await seconds { result = try await client.call("segments.count", ["filters": segment.filters]) })
            matched.append(Int(result["matched"]?.intValue ?? -1))
        }
        if let expected, expected != matched {
            throw BenchError("the big book counted \(matched), earlier \(expected)")
        }
        expected = matched
        return times
    }

    /// Polls `books.list` (for the books not yet seen ready) until every one is `ready`; the
    /// seconds since `spawn`, with the poll's 20 ms resolution.
    static func waitForBooks(
        _ client: RPCClient, names: [String], since spawn: ContinuousClock.Instant, loaded: Flag, timeout: Double = 3_600
    ) async throws -> Double {
        var pending = Set(names)
        let deadline = spawn + .seconds(timeout)
        while true {
            let listed = try await client.call("books.list", ["names": .array(pending.sorted().map { .string($0) })])
            for book in listed["books"]?.arrayValue ?? [] {
                guard let name = book["name"]?.stringValue else { continue }
                switch book["state"]?.stringValue {
                case "ready": pending.remove(name)
                case "failed": throw BenchError("book \(name) failed to load: \(book["error"]?.stringValue ?? "")")
                default: break
                }
            }
            if pending.isEmpty {
                loaded.set()
                return (ContinuousClock.now - spawn) / .seconds(1)
            }
            guard ContinuousClock.now < deadline else { throw BenchError("\(pending.count) books were still loading after \(Int(timeout)) s") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Creates the small books, four connections each making one book after another.
    static func createSmallBooks(socket: String, names: [String], seed: UInt64, now: Double, segments: [BenchSegment]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    let client = try await RPCClient.connect(unixPath: socket)
                    for index in stride(from: worker, to: names.count, by: 4) {
                        try await createSmallBook(client, name: names[index], index: index, seed: seed, now: now, segments: segments)
                    }
                    try await client.close()
                }
            }
            try await group.waitForAll()
        }
    }

    /// One small account: the bench's custom fields, a few dozen contacts with their engagement,
    /// two segments and a trigger on the first.
    static func createSmallBook(
        _ client: RPCClient, name: String, index: Int, seed: UInt64, now: Double, segments: [BenchSegment]
    ) async throws {
        let book = JSONValue.string(name)
        _ = try await client.call("books.create", ["name": book])
        for (field, type) in SyntheticBook.fields {
            _ = try await client.call("fields.define", ["book": book, "name": .string(field), "type": .string(type)])
        }
        let synthetic = SyntheticBook(count: smallBookSize(index), seed: seed &+ UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15, now: now)
        let contacts = (0..<synthetic.count).map(synthetic.contact)
        try check(try await client.call("contacts.upsert", ["book": book, "contacts": .array(contacts.map(\.document))]))
        try check(try await client.call("engagement.record", ["book": book, "events": .array(contacts.flatMap(\.events))]))
        var first: JSONValue?
        for segment in segments {
            let created = try await client.call("segments.create", ["book": book, "name": .string(segment.name), "filters": segment.filters])
            first = first ?? created["id"]
        }
        guard let first else { throw BenchError("no segment to put a trigger on in book \(name)") }
        _ = try await client.call("triggers.create", ["book": book, "segment": first, "on": ["enter", "exit"]])
    }

    /// 1000 → "1,000".
    static func grouped(_ value: Int) -> String {
        let digits = String(value)
        var out = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0, (digits.count - offset) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }
}

/// Set once, read by another task.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
